"""Claimers racing each other never put more jobs in flight than the cap allows: real
threads, each claiming through its own pooled connection, while others finish jobs and a
watcher counts what is in flight (one statement: a consistent snapshot on PostgreSQL)."""

from __future__ import annotations

import random
import threading

import pytest
from sqlalchemy import func, select, update

from falbridge.models.db import transaction
from falbridge.models.jobs import create_job
from falbridge.models.tables import Job
from falbridge.worker import flow
from falbridge.worker.claim import claim_batch

pytestmark = pytest.mark.usefixtures("db_url")

JOBS, CLAIMERS, CAP, PER_ENDPOINT = 60, 6, 5, 2
ENDPOINTS = ("fal-ai/a", "fal-ai/b", "fal-ai/c")


def _in_flight() -> dict[str, int]:
    with transaction() as s:
        return flow.in_flight(s)


def test_concurrent_claimers_never_exceed_the_caps(monkeypatch):
    monkeypatch.setenv("FALBRIDGE_MAX_IN_FLIGHT", str(CAP))
    monkeypatch.setenv("FALBRIDGE_MAX_IN_FLIGHT_PER_ENDPOINT", f"{ENDPOINTS[0]}={PER_ENDPOINT}")
    with transaction() as s:
        for i in range(JOBS):
            create_job(s, ENDPOINTS[i % len(ENDPOINTS)], {"n": i})
    claimed: list[str] = []
    seen: list[dict[str, int]] = []
    errors: list[BaseException] = []
    done = threading.Event()
    start = threading.Barrier(CLAIMERS + 2)

    def claimer() -> None:
        start.wait()
        while not done.is_set():
            batch = claim_batch(random.randint(1, 4))
            claimed.extend(str(c.job_id) for c in batch.claims)
            seen.append(_in_flight())  # right after this claim committed

    def finisher() -> None:
        # fal finishing jobs: some of what is in flight leaves it, so slots free up.
        start.wait()
        while len(set(claimed)) < JOBS or _in_flight():
            with transaction() as s:
                leased = s.scalars(select(Job.id).where(flow.in_flight_filter()).limit(2)).all()
                s.execute(
                    update(Job).where(Job.id.in_(leased)).values(status="completed", submit_lease_until=None)
                )
        done.set()

    def watcher() -> None:
        start.wait()
        while not done.is_set():
            seen.append(_in_flight())

    def guarded(target):
        def run() -> None:
            try:
                target()
            except BaseException as exc:  # reported below, not lost in the thread
                errors.append(exc)
                done.set()

        return run

    threads = [threading.Thread(target=guarded(claimer)) for _ in range(CLAIMERS)]
    threads += [threading.Thread(target=guarded(finisher)), threading.Thread(target=guarded(watcher))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors, errors
    assert not any(thread.is_alive() for thread in threads)
    assert sorted(claimed) == sorted(set(claimed)) and len(claimed) == JOBS  # each job once
    assert max(sum(counts.values()) for counts in seen) <= CAP
    assert max(counts.get(ENDPOINTS[0], 0) for counts in seen) <= PER_ENDPOINT
    # The caps were reached, not merely never approached.
    assert max(sum(counts.values()) for counts in seen) == CAP
    with transaction() as s:
        assert s.scalar(select(func.max(Job.submit_attempts))) == 1
