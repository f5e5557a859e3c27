"""A submit fal took whose answer was never recorded (the worker died between fal's 200 and
its commit), then fal's callback saying "fetch the result" (payload_error): the ordering a
1,000-job chaos run hit (bench/chaos.py, flow control off), replayed step by step. The
callback proves fal has the request, so neither the lease's expiry nor the sweeper's
outcome-unknown policy may resubmit or fail the job: its result is fetched."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from falbridge.config import SweepConfig
from falbridge.models.db import transaction
from falbridge.models.inbox import store_verified
from falbridge.models.jobs import create_job
from falbridge.models.tables import Job, JobEvent, utcnow
from falbridge.worker.apply.delivery import DeliveryOutcome, apply_delivery
from falbridge.worker.claim import claim_batch
from falbridge.worker.fal.records import Submission
from falbridge.worker.followup import FollowUp, Work
from falbridge.worker.submit import Submitted, claim, record_submission
from falbridge.worker.sweep import sweep
from falbridge.worker.webhook_url import webhook_url
from tests.plugins.rows import row

NO_GRACE = SweepConfig(
    pending_grace_s=0, delivery_grace_s=0, silent_after_s=3600, poll_every_s=3600, outcome_unknown_grace_s=0
)
TOO_BIG = {"request_id": "req-1", "status": "OK", "payload": None, "payload_error": "too big"}


@pytest.fixture(autouse=True)
def secret_key(db_url, monkeypatch):
    monkeypatch.setenv("FALBRIDGE_SECRET_KEY", "lost-answer-test-secret-key-" + "k" * 24)


def _sent_by_a_worker_that_died(status: str) -> uuid.UUID:
    """Leased and sent, its lease long expired, no request id recorded."""
    with transaction() as s:
        job, _ = create_job(s, "fal-ai/evf-sam", {"prompt": "cat"})
        job_id = job.id
    with transaction() as s:
        s.execute(
            update(Job)
            .where(Job.id == job_id)
            .values(status=status, submit_lease_until=utcnow() - timedelta(minutes=5), submit_attempts=1)
        )
    return job_id


def _fal_calls_back(job_id: uuid.UUID) -> int:
    token = webhook_url(job_id).rsplit("token=", 1)[1]
    headers = {"query_job_id": str(job_id), "query_token": token}
    with transaction() as s:
        stored = store_verified(s, request_id="req-1", body=json.dumps(TOO_BIG).encode(), headers=headers)
        return stored.delivery_id


def _sweep_finds() -> set[tuple[Work, str]]:
    found: list[FollowUp] = []
    sweep(found.append, NO_GRACE)
    return {(f.work, f.target) for f in found}


@pytest.mark.parametrize("status", ["pending", "outcome_unknown"])
def test_the_callback_makes_the_job_submitted_and_its_result_is_fetched_not_resubmitted(status):
    job_id = _sent_by_a_worker_that_died(status)
    applied = apply_delivery(_fal_calls_back(job_id))
    assert applied.outcome is DeliveryOutcome.RESULT_FETCH_NEEDED
    job = row(Job, job_id)
    assert (job.status, job.request_id, job.result_pending) == ("submitted", "req-1", True)
    assert job.submit_lease_until is None and job.submitted_at is not None
    with transaction() as s:
        last = s.scalars(
            select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.seq.desc())
        ).first()
        assert (last.from_status, last.to_status, last.source) == (status, "submitted", "webhook")

    # The next claimer, the resubmit policy's claim and the sweeper all leave it to the fetch.
    assert claim_batch(10).settled == {}
    assert claim(job_id, resubmit=True) is Submitted.NOT_PENDING
    found = _sweep_finds()
    assert (Work.FETCH_RESULT, str(job_id)) in found
    assert not {work for work, target in found if target == str(job_id)} & {
        Work.RESUBMIT,
        Work.FAIL_OUTCOME_UNKNOWN,
        Work.SUBMIT,
    }
    assert row(Job, job_id).status == "submitted"


def test_a_late_submit_answer_after_the_callback_keeps_the_job_submitted():
    job_id = _sent_by_a_worker_that_died("pending")
    apply_delivery(_fal_calls_back(job_id))
    answer = Submission(
        endpoint_id="fal-ai/evf-sam",
        request_id="req-1",
        status_url="http://fal.test/s",
        response_url="http://fal.test/r",
        cancel_url="http://fal.test/c",
    )
    assert record_submission(job_id, answer).outcome is Submitted.FINISHED_FIRST
    job = row(Job, job_id)
    assert (job.status, job.request_id, job.result_pending, job.response_url) == (
        "submitted",
        "req-1",
        True,
        "http://fal.test/r",
    )
