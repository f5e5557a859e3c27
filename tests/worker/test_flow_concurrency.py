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


def _flying_and_waiting() -> tuple[dict[str, int], dict[str, int]]:
    """Jobs in flight and jobs waiting to be claimed, by endpoint, from one statement (one
    snapshot on PostgreSQL, so the two agree)."""
    flying = flow.in_flight_filter()
    waiting = (Job.status == "pending") & Job.submit_lease_until.is_(None)
    with transaction() as s:
        rows = s.execute(
            select(Job.endpoint_id, flying, func.count())
            .where(flying | waiting)
            .group_by(Job.endpoint_id, flying)
        ).all()
    counts: tuple[dict[str, int], dict[str, int]] = ({}, {})
    for endpoint, in_flight, count in rows:
        counts[0 if in_flight else 1][endpoint] = int(count)
    return counts


def _room(flying: dict[str, int], waiting: dict[str, int]) -> int:
    """How many more jobs the caps let claimers take right now."""
    per_endpoint = {ENDPOINTS[0]: PER_ENDPOINT}
    claimable = sum(
        min(count, per_endpoint.get(endpoint, CAP) - flying.get(endpoint, 0))
        for endpoint, count in waiting.items()
    )
    return max(0, min(CAP - sum(flying.values()), claimable))


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
        # fal finishing jobs: once the claimers have taken all the caps allow, some of what
        # is in flight leaves it, so slots free up (waiting for the caps to be reached makes
        # reaching them certain, not a matter of thread timing).
        start.wait()
        while True:
            flying, waiting = _flying_and_waiting()
            if not flying and not waiting:
                break
            if _room(flying, waiting):
                continue  # the claimers fill it
            seen.append(flying)
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
