"""Claiming pending jobs in batches (worker/claim.py) and flow control's limits on it
(worker/flow.py), on the database alone: nothing here is sent to fal."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from sqlalchemy import update

from falbridge.models.db import transaction
from falbridge.models.jobs import create_job
from falbridge.models.tables import Job, utcnow
from falbridge.worker import flow
from falbridge.worker.claim import claim_batch
from falbridge.worker.submit import Submitted, claim

pytestmark = pytest.mark.usefixtures("db_url")


def _jobs(n: int, endpoint: str = "fal-ai/some/model", **fields) -> list[uuid.UUID]:
    """`n` pending jobs, created one after the other (so in this order oldest first)."""
    ids = []
    for i in range(n):
        with transaction() as s:
            job, _ = create_job(s, endpoint, {"n": i})
            ids.append(job.id)
    if fields:
        with transaction() as s:
            s.execute(update(Job).where(Job.id.in_(ids)).values(**fields))
    return ids


def _job(job_id: uuid.UUID) -> Job:
    with transaction() as s:
        job = s.get(Job, job_id)
        assert job is not None
        return job


def _finish(job_ids) -> None:
    with transaction() as s:
        s.execute(
            update(Job).where(Job.id.in_(list(job_ids))).values(status="completed", submit_lease_until=None)
        )


def test_a_batch_takes_the_oldest_pending_jobs_and_leases_each_once():
    ids = _jobs(5)
    first = claim_batch(3)
    assert [c.job_id for c in first.claims] == ids[:3]
    assert [c.input for c in first.claims] == [{"n": 0}, {"n": 1}, {"n": 2}]
    second = claim_batch(3)
    assert [c.job_id for c in second.claims] == ids[3:]  # the leased ones are not taken again
    assert claim_batch(3).claims == []
    for job_id in ids:
        job = _job(job_id)
        assert job.status == "pending" and job.submit_attempts == 1
        assert job.submit_lease_until is not None and job.submit_lease_until > utcnow()


def test_the_batch_applies_the_single_claims_rules_to_what_it_meets():
    [expired] = _jobs(1, submit_lease_until=utcnow() - timedelta(seconds=1))
    [cancelled] = _jobs(1, cancel_requested_at=utcnow())
    [later] = _jobs(1, submit_retry_at=utcnow() + timedelta(minutes=5))
    [due] = _jobs(1, submit_retry_at=utcnow() - timedelta(seconds=1))
    batch = claim_batch(10)
    assert [c.job_id for c in batch.claims] == [due]
    assert batch.settled == {expired: Submitted.OUTCOME_UNKNOWN, cancelled: Submitted.CANCELLED}
    assert _job(expired).status == "outcome_unknown" and _job(expired).submit_lease_until is None
    assert _job(cancelled).status == "cancelled"
    assert _job(later).status == "pending" and _job(later).submit_lease_until is None
    assert _job(due).submit_retry_at is None  # the lease clears the retry time


def test_the_global_cap_counts_every_job_in_flight(monkeypatch):
    monkeypatch.setenv("FALBRIDGE_MAX_IN_FLIGHT", "4")
    _jobs(1, status="submitted")
    _jobs(1, status="in_progress")
    _jobs(1, status="outcome_unknown")
    _jobs(1, status="completed")  # not in flight
    waiting = _jobs(3)
    batch = claim_batch(10)
    assert [c.job_id for c in batch.claims] == waiting[:1] and batch.held
    again = claim_batch(10)  # the leased pending job holds its slot too
    assert again.claims == [] and again.held
    _finish(waiting[:1])
    assert [c.job_id for c in claim_batch(10).claims] == waiting[1:2]


def test_a_full_endpoint_does_not_hold_back_the_others(monkeypatch):
    monkeypatch.setenv("FALBRIDGE_MAX_IN_FLIGHT_PER_ENDPOINT", "fal-ai/evf-sam=2, fal-ai/flux/dev=1")
    sam = _jobs(4, "fal-ai/evf-sam")
    flux = _jobs(2, "fal-ai/flux/dev")
    other = _jobs(2, "fal-ai/other")  # no cap of its own, and no global cap
    batch = claim_batch(10)
    assert {c.job_id for c in batch.claims} == {*sam[:2], flux[0], *other} and batch.held
    # Once the capped endpoints are full, the claim does not even look at their jobs.
    assert claim_batch(1).claims == []
    _finish(sam[:1])
    assert [c.job_id for c in claim_batch(10).claims] == [sam[2]]


def test_the_single_job_claim_waits_for_a_slot_too(monkeypatch):
    monkeypatch.setenv("FALBRIDGE_MAX_IN_FLIGHT", "1")
    first, second = _jobs(2)
    assert claim(first).job_id == first  # type: ignore[union-attr]
    assert claim(second) is Submitted.WAITING
    assert _job(second).submit_attempts == 0 and _job(second).submit_lease_until is None


def test_the_rate_limit_grants_its_burst_then_one_token_at_a_time(monkeypatch):
    monkeypatch.setenv("FALBRIDGE_SUBMIT_RATE", "2")
    monkeypatch.setenv("FALBRIDGE_SUBMIT_BURST", "3")
    _jobs(5)
    first = claim_batch(10)
    assert len(first.claims) == 3 and first.held
    assert first.wait_s is not None and 0 < first.wait_s <= 0.5
    # Refill as if a second had passed: the bucket's clock moved back by one second.
    with transaction() as s:
        bucket = s.get(flow.SubmitTokens, flow.BUCKET)
        bucket.refilled_at -= timedelta(seconds=1)
    second = claim_batch(10)
    assert len(second.claims) == 2 and second.wait_s is None


def test_endpoint_caps_are_parsed_strictly(monkeypatch):
    from falbridge.config import ConfigError, FlowConfig, parse_endpoint_caps

    assert parse_endpoint_caps("") == {}
    assert parse_endpoint_caps("fal-ai/evf-sam=4,fal-ai/flux/dev=2") == {
        "fal-ai/evf-sam": 4,
        "fal-ai/flux/dev": 2,
    }
    for bad in ("fal-ai/evf-sam", "fal-ai/evf-sam=0", "=3", "a=1,a=2", "a=x"):
        with pytest.raises(ValueError):
            parse_endpoint_caps(bad)
    monkeypatch.setenv("FALBRIDGE_MAX_IN_FLIGHT_PER_ENDPOINT", "fal-ai/evf-sam=zero")
    from falbridge import config

    with pytest.raises(ConfigError, match="FALBRIDGE_MAX_IN_FLIGHT_PER_ENDPOINT"):
        config.current()
    assert not FlowConfig().active()


def test_under_flow_control_the_sweeper_asks_for_one_drain_and_reconcile_keeps_the_cap(monkeypatch):
    from falbridge.config import SweepConfig
    from falbridge.worker import inline
    from falbridge.worker.followup import FollowUp, Work
    from falbridge.worker.sweep import sweep

    old = utcnow() - timedelta(hours=1)
    ids = _jobs(3, touched_at=old)
    monkeypatch.setenv("FALBRIDGE_MAX_IN_FLIGHT", "1")
    found: list[FollowUp] = []
    report = sweep(found.append, SweepConfig(pending_grace_s=60))
    assert found == [FollowUp(Work.SUBMIT_PENDING, "")] and report.resubmitted_pending == 1
    assert {_job(job_id).touched_at for job_id in ids} == {old}  # nothing marked: they wait in order
    # `falbridge reconcile` runs the drain here and now: within the cap, oldest first.
    # (No fal answers here: the claimed job is sent to an unreachable queue URL and waits
    # for its retry time, which also frees its slot; the cap holds the others back.)
    monkeypatch.setenv("FAL_QUEUE_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("FAL_KEY", "test-key-id:test-key-secret")
    from falbridge.worker.fal import client

    client.close_client()
    try:
        sweep(inline.run, SweepConfig(pending_grace_s=60))
    finally:
        client.close_client()
    assert [_job(job_id).submit_attempts for job_id in ids] == [1, 0, 0]
