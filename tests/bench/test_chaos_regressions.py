"""Bugs the chaos run (bench/chaos.py) found in worker/, pinned down without the whole stack.

1. The sweeper re-drove the same work on every sweep while the task it had enqueued
   still waited in a backlog, so an overload fed itself (50,000 queued tasks for 1,300
   jobs at N=2,000). Now a re-driven job is marked and left alone for a grace period.
2. A resubmission refused with a retryable error (503, 429) was never retried: the retry
   found `resubmitted_at` set and did nothing, and the job later failed as "outcome
   unknown" although fal had not taken the resubmission.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import update

from falbridge.config import SweepConfig
from falbridge.models.db import transaction
from falbridge.models.jobs import create_job
from falbridge.models.tables import Job, utcnow
from falbridge.worker import submit
from falbridge.worker.followup import Work
from falbridge.worker.sweep import sweep

GRACE = SweepConfig(
    pending_grace_s=60, delivery_grace_s=60, silent_after_s=60, poll_every_s=60, outcome_unknown_grace_s=60
)


KIND = {Work.SUBMIT: "submit", Work.POLL: "poll", Work.FETCH_RESULT: "fetch", Work.RESUBMIT: "resubmit"}


def _recorder(calls: list[tuple[str, str]]):
    return lambda work: calls.append((KIND.get(work.work, str(work.work)), work.target))


def _job(**fields) -> str:
    with transaction() as s:
        job, _ = create_job(s, "fal-ai/some/model", {"n": 1})
        job_id = job.id
    long_ago = utcnow() - timedelta(hours=1)
    with transaction() as s:
        s.execute(update(Job).where(Job.id == job_id).values(touched_at=long_ago, **fields))
    return str(job_id)


def test_a_redriven_job_is_not_redriven_again_by_the_next_sweep(db_url):
    pending = _job()
    silent = _job(status="submitted", request_id="req-silent")
    fetch = _job(status="submitted", request_id="req-fetch", result_pending=True)
    unknown = _job(status="outcome_unknown")
    calls: list[tuple[str, str]] = []
    sweep(_recorder(calls), GRACE)
    assert sorted(calls) == sorted(
        [("submit", pending), ("poll", silent), ("fetch", fetch), ("resubmit", unknown)]
    )
    calls.clear()
    sweep(_recorder(calls), GRACE)  # the enqueued tasks may still be waiting
    assert calls == []
    with transaction() as s:  # the poll mark leaves touched_at alone: it measures fal's silence
        job = s.get(Job, uuid.UUID(silent))
        assert job.last_polled_at is not None and job.touched_at < utcnow() - timedelta(minutes=30)


def test_a_refused_resubmission_can_be_claimed_again_by_its_retry(db_url):
    job_id = _job(status="outcome_unknown")
    claimed = submit.claim(job_id, resubmit=True)
    assert isinstance(claimed, submit.Claim), claimed
    submit.release(claimed.job_id)  # what submit() does on a RetryableError
    again = submit.claim(job_id, resubmit=True)
    assert isinstance(again, submit.Claim), again
    # Still at most one resubmission in flight: a second claim now is refused.
    assert not isinstance(submit.claim(job_id, resubmit=True), submit.Claim)
