"""The batched submit against the sandbox: claim, send concurrently, record once
(worker/submit_batch.py), and flow control end to end through the Celery worker."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from sqlalchemy import update

from falbridge.models.db import transaction
from falbridge.models.jobs import create_job
from falbridge.models.tables import Job, utcnow
from falbridge.worker.actions import submit
from falbridge.worker.submit import Submitted
from falbridge.worker.submit_batch import submit_batch
from tests.webhooks.test_pipeline import _cat_uri

EVF = "fal-ai/evf-sam"


def _pending(endpoint: str, input: dict, **fields) -> uuid.UUID:
    """A pending job whose submit task was never enqueued (only the batch sends it)."""
    with transaction() as s:
        job, _ = create_job(s, endpoint, input)
    if fields:
        with transaction() as s:
            s.execute(update(Job).where(Job.id == job.id).values(**fields))
    return job.id


def _load(job_id: uuid.UUID) -> Job:
    with transaction() as s:
        job = s.get(Job, job_id)
        assert job is not None
        return job


def test_a_batch_is_sent_and_recorded_once_and_every_job_completes(pipeline):
    ids = [_pending(EVF, {"prompt": f"cat {i}", "image_url": _cat_uri()}) for i in range(12)]
    report = submit_batch(50)
    assert report.claimed == 12 and not report.full and not report.held
    # A callback may come, and be applied, before the batch's answers are recorded.
    assert set(report.outcomes) == set(ids)
    assert set(report.outcomes.values()) <= {Submitted.SUBMITTED, Submitted.FINISHED_FIRST}
    jobs = pipeline.wait_terminal(*ids)
    truth = pipeline.sandbox.ground_truth()["requests"]
    assert len(truth) == 12  # each job reached fal exactly once
    assert {job.request_id for job in jobs} == {request["request_id"] for request in truth}
    for job in jobs:
        [request] = [r for r in truth if r["request_id"] == job.request_id]
        assert str(job.id) in request["webhook_url"] and request["input"]["prompt"] == job.input["prompt"]
        assert (job.status, job.submit_attempts) == ("completed", 1)
        statuses = [e.to_status for e in job.events]
        assert statuses[0] == "pending" and statuses.count("completed") == 1
        if report.outcomes[job.id] is Submitted.SUBMITTED:
            assert statuses[1] == "submitted"


def test_each_answer_in_a_batch_follows_the_single_job_rules(pipeline):
    sent = _pending(EVF, {"prompt": "cat", "image_url": _cat_uri()})
    invalid = _pending(EVF, {"prompt": "no image"})  # stored before a rule changed: never sent
    expired = _pending(EVF, {"prompt": "x"}, submit_lease_until=utcnow() - timedelta(seconds=1))
    cancelled = _pending(EVF, {"prompt": "y"}, cancel_requested_at=utcnow())
    report = submit_batch(10)
    assert report.outcomes == {
        sent: Submitted.SUBMITTED,
        invalid: Submitted.REJECTED,
        expired: Submitted.OUTCOME_UNKNOWN,
        cancelled: Submitted.CANCELLED,
    }
    assert (_load(invalid).status, _load(invalid).error_type) == ("failed", "invalid_input")
    assert _load(expired).status == "outcome_unknown" and _load(cancelled).status == "cancelled"
    pipeline.wait_terminal(sent)
    assert len(pipeline.sandbox.ground_truth()["requests"]) == 1


def test_a_lost_answer_in_a_batch_is_outcome_unknown_and_never_sent_again(pipeline):
    pipeline.sandbox.set_faults(submit_response_lost=1.0, drop=1.0)
    ids = [_pending("fal-ai/some/model", {"n": i}) for i in range(3)]
    assert submit_batch(10).outcomes == dict.fromkeys(ids, Submitted.OUTCOME_UNKNOWN)
    assert submit_batch(10).claimed == 0
    pipeline.sandbox.wait_idle(timeout=10)
    assert len(pipeline.sandbox.ground_truth()["requests"]) == 3
    assert {_load(job_id).status for job_id in ids} == {"outcome_unknown"}


def test_a_refused_batch_waits_for_its_retry_time_then_fails_past_the_retries(pipeline):
    pipeline.sandbox.set_faults(submit_429=1.0, retry_after_s=30)
    first = _pending("fal-ai/some/model", {"n": 1})
    last_try = _pending("fal-ai/some/model", {"n": 2}, submit_attempts=3)  # FALBRIDGE_SUBMIT_MAX_RETRIES=3
    report = submit_batch(10)
    assert report.outcomes == {first: Submitted.WAITING, last_try: Submitted.GAVE_UP}
    assert report.retries == [(str(first), 30.0)]
    job = _load(first)
    assert (job.status, job.submit_lease_until, job.submit_attempts) == ("pending", None, 1)
    assert job.submit_retry_at is not None and job.submit_retry_at > utcnow() + timedelta(seconds=25)
    assert submit_batch(10).claimed == 0  # not before its time
    gave_up = _load(last_try)
    assert (gave_up.status, gave_up.error_type) == ("failed", "submit_retries_exhausted")
    assert pipeline.sandbox.ground_truth()["requests"] == []


def _peak_overlap(requests: list[dict]) -> int:
    """Most requests fal held at once (queued or running), from its own timestamps."""
    edges = sorted(
        [(r["submitted_at"], 1) for r in requests] + [(r["completed_at"], -1) for r in requests],
        key=lambda edge: (edge[0], edge[1]),  # an end before a start at the same instant
    )
    peak = held = 0
    for _, step in edges:
        held += step
        peak = max(peak, held)
    return peak


@pytest.mark.parametrize("cap", [2])
def test_jobs_over_the_cap_wait_and_go_out_as_slots_free(pipeline, monkeypatch, cap):
    """No sweeper runs here: every job past the first two is sent because a job that
    ended woke the submitter."""
    monkeypatch.setenv("FALBRIDGE_MAX_IN_FLIGHT", str(cap))
    pipeline.sandbox.set_config(latency_s=0.3)
    try:
        jobs = [submit("fal-ai/some/model", {"n": i})[0] for i in range(7)]
        done = pipeline.wait_terminal(*(job.id for job in jobs), timeout=60)
    finally:
        pipeline.sandbox.set_config(latency_s=0.01)
    assert {job.status for job in done} == {"completed"}
    truth = pipeline.sandbox.ground_truth()["requests"]
    assert len(truth) == 7 and _peak_overlap(truth) <= cap
    sent_at = {r["request_id"]: r["submitted_at"] for r in truth}
    sent = [sent_at[job.request_id] for job in done]  # in the order the jobs were created
    # Oldest first: jobs claimed together are sent side by side, so only jobs `cap` apart
    # in age are ordered for sure.
    assert all(sent[i] < sent[j] for i in range(len(sent)) for j in range(i + cap, len(sent)))
