"""What one sweep finds and what it leaves alone (worker/sweep.py), without Celery:
`sweep(run, settings)` takes any callable, so each test stores the rows a lost or running
step leaves behind, sweeps once with a recorder as `run`, and checks what it was handed."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from falbridge import config
from falbridge.config import SweepConfig
from falbridge.models.db import transaction
from falbridge.models.inbox import store_rejected, store_verified
from falbridge.models.jobs import create_job
from falbridge.models.tables import Job, JobEvent, WebhookDelivery, utcnow
from falbridge.worker import inline
from falbridge.worker.followup import FollowUp, Work
from falbridge.worker.sweep import SweepReport, fail_outcome_unknown, sweep

GRACE = SweepConfig(
    pending_grace_s=60, delivery_grace_s=60, silent_after_s=60, poll_every_s=60, outcome_unknown_grace_s=60
)
LONG_AGO = timedelta(hours=1)

pytestmark = pytest.mark.usefixtures("db_url")


def _job(age: timedelta = LONG_AGO, **fields) -> str:
    """A job last touched `age` ago (what the grace periods measure), with `fields` set."""
    with transaction() as s:
        job, _ = create_job(s, "fal-ai/some/model", {"n": 1})
        job_id = job.id
    with transaction() as s:
        s.execute(update(Job).where(Job.id == job_id).values(touched_at=utcnow() - age, **fields))
    return str(job_id)


def _delivery(age: timedelta = LONG_AGO, *, request_id: str = "req-1", processed: bool = False) -> str:
    body = json.dumps({"request_id": request_id, "status": "OK", "payload": {}}).encode()
    with transaction() as s:
        delivery = s.get(
            WebhookDelivery, store_verified(s, request_id=request_id, body=body, headers={}).delivery_id
        )
        delivery.received_at = utcnow() - age
        if processed:
            delivery.processed_at, delivery.outcome = utcnow() - age, "applied"
        return str(delivery.id)


def _swept(settings: SweepConfig = GRACE) -> tuple[list[FollowUp], SweepReport]:
    found: list[FollowUp] = []
    report = sweep(found.append, settings)
    return found, report


def _found(settings: SweepConfig = GRACE) -> set[tuple[Work, str]]:
    return {(work.work, work.target) for work in _swept(settings)[0]}


def _status(job_id: str) -> str:
    with transaction() as s:
        return s.get(Job, uuid.UUID(job_id)).status


def test_a_pending_job_whose_submit_lease_is_live_is_not_redriven():
    leased = _job(submit_lease_until=utcnow() + timedelta(minutes=5))
    expired = _job(submit_lease_until=utcnow() - timedelta(seconds=1))
    unclaimed = _job()
    found, report = _swept()
    assert {(work.work, work.target) for work in found} == {(Work.SUBMIT, expired), (Work.SUBMIT, unclaimed)}
    assert report.resubmitted_pending == 2
    assert leased not in {target for _, target in _found(GRACE.model_copy(update={"pending_grace_s": 0}))}


def test_a_pending_job_within_its_grace_period_is_left_to_its_own_submit():
    _job(age=timedelta(seconds=10))
    old = _job(age=timedelta(seconds=90))
    assert _found() == {(Work.SUBMIT, old)}


def test_a_resubmission_that_also_stayed_unknown_is_failed_by_the_next_sweep():
    job_id = _job(status="outcome_unknown", resubmitted_at=utcnow() - LONG_AGO, submit_attempts=2)
    report = sweep(inline.run, GRACE)
    assert report.outcome_unknown_failed == 1 and report.outcome_unknown_resubmitted == 0
    with transaction() as s:
        job = s.get(Job, uuid.UUID(job_id))
        assert (job.status, job.error_type) == ("failed", "submit_outcome_unknown")
    assert _swept()[0] == []  # and it stays failed: nothing left to find


def test_an_unknown_outcome_is_resubmitted_once_or_failed_as_the_policy_says():
    first = _job(status="outcome_unknown")
    again = _job(status="outcome_unknown", resubmitted_at=utcnow() - LONG_AGO)
    _job(status="outcome_unknown", age=timedelta(seconds=10))  # still within its grace period
    assert _found() == {(Work.RESUBMIT, first), (Work.FAIL_OUTCOME_UNKNOWN, again)}
    fail = GRACE.model_copy(update={"outcome_unknown_policy": "fail"})
    assert _found(fail) == {(Work.FAIL_OUTCOME_UNKNOWN, again)}  # `first` waits: it was just re-driven
    other = _job(status="outcome_unknown")
    assert _found(fail) == {(Work.FAIL_OUTCOME_UNKNOWN, again), (Work.FAIL_OUTCOME_UNKNOWN, other)}


def test_the_resubmit_policy_is_known_by_its_value_not_by_which_string_holds_it(monkeypatch):
    """A policy of "resubmit" built at run time is another str object than the literal in
    the code. Read from FALBRIDGE_OUTCOME_UNKNOWN_POLICY as a process reads it, pydantic
    hands back its Literal's own string; settings derived with model_copy keep the very
    object they are given. Either way, it resubmits."""
    arriving = "".join(["re", "submit"])
    monkeypatch.setenv("FALBRIDGE_OUTCOME_UNKNOWN_POLICY", arriving)
    from_environment = config.current().sweep  # its grace periods are shorter than LONG_AGO
    assert from_environment.outcome_unknown_policy == "resubmit"
    first = _job(status="outcome_unknown")
    assert _found(from_environment) == {(Work.RESUBMIT, first)}
    derived = GRACE.model_copy(update={"outcome_unknown_policy": arriving})
    second = _job(status="outcome_unknown")
    assert _found(derived) == {(Work.RESUBMIT, second)}  # `first` waits: it was just re-driven


def test_failing_an_unknown_outcome_leaves_alone_a_job_that_moved_on():
    # Found by a sweep as outcome_unknown, then its callback or a poll came first.
    for status in ("submitted", "in_progress", "completed", "pending"):
        moved_on = _job(status=status)
        assert fail_outcome_unknown(moved_on) is False, status
        assert _status(moved_on) == status
    unknown = _job(status="outcome_unknown")
    assert fail_outcome_unknown(unknown) is True
    with transaction() as s:
        job = s.get(Job, uuid.UUID(unknown))
        assert (job.status, job.error_type) == ("failed", "submit_outcome_unknown")
        assert job.error == "submit outcome unknown and no callback arrived within the grace period"
        [event] = s.scalars(select(JobEvent).where(JobEvent.job_id == job.id, JobEvent.to_status == "failed"))
        assert event.source == "reconcile"
    assert fail_outcome_unknown(str(uuid.uuid4())) is False
    assert fail_outcome_unknown("not-a-job-id") is False


def test_processed_deliveries_are_never_redriven():
    _delivery(request_id="req-done", processed=True)
    with transaction() as s:
        rejected = store_rejected(
            s, request_id="req-x", code="bad_signature", reason="r", headers={}, body=b""
        )
        s.get(WebhookDelivery, rejected).received_at = utcnow() - LONG_AGO
    _delivery(age=timedelta(seconds=10), request_id="req-new")  # its own task may still run
    lost = _delivery(request_id="req-lost")
    assert _found() == {(Work.APPLY_DELIVERY, lost)}


def test_a_job_waiting_for_its_result_is_fetched_unless_it_finished():
    waiting = _job(status="submitted", request_id="req-1", result_pending=True)
    _job(status="failed", request_id="req-2", result_pending=True)
    _job(status="submitted", request_id="req-3", result_pending=True, age=timedelta(seconds=10))
    assert _found() == {(Work.FETCH_RESULT, waiting)}


def test_only_silent_submitted_jobs_are_polled_and_not_again_too_soon():
    silent = _job(status="submitted", request_id="req-1")
    running = _job(status="in_progress", request_id="req-2")
    polled_long_ago = _job(status="submitted", request_id="req-3", last_polled_at=utcnow() - LONG_AGO)
    _job(status="submitted", request_id="req-4", last_polled_at=utcnow() - timedelta(seconds=10))
    _job(status="submitted", request_id="req-5", age=timedelta(seconds=10))
    _job(status="completed", request_id="req-6")
    assert _found() == {(Work.POLL, silent), (Work.POLL, running), (Work.POLL, polled_long_ago)}


def test_each_redriven_job_is_left_alone_by_the_next_sweep():
    for fields in (
        {},
        {"status": "submitted", "request_id": "r", "result_pending": True},
        {"status": "outcome_unknown"},
    ):
        job_id = _job(**fields)  # the jobs of earlier rounds were just re-driven: not found again
        assert len(_swept()[0]) == 1, fields
        assert _swept()[0] == [], fields
        with transaction() as s:
            assert s.get(Job, uuid.UUID(job_id)).touched_at > utcnow() - timedelta(minutes=1)


def test_one_failing_piece_does_not_stop_the_others_and_is_reported():
    broken = _job()
    _job(status="submitted", request_id="req-1")
    _job(status="submitted", request_id="req-2", result_pending=True)

    def run(work: FollowUp) -> None:
        if work.target == broken:
            raise RuntimeError("broker down")

    report = sweep(run, GRACE)
    assert report.errors == [f"resubmitted_pending {broken}: broker down"]
    assert (report.resubmitted_pending, report.polled, report.result_fetches) == (0, 1, 1)
    assert report.total() == 2


def test_the_sweep_prunes_rejected_deliveries_past_their_retention():
    with transaction() as s:
        ids = [
            store_rejected(s, request_id=None, code="bad_signature", reason="r", headers={}, body=b"x")
            for _ in range(3)
        ]
        s.get(WebhookDelivery, ids[0]).received_at = utcnow() - timedelta(hours=3)
        s.get(WebhookDelivery, ids[1]).received_at = utcnow() - timedelta(hours=1)
    kept_verified = _delivery(age=timedelta(hours=3), processed=True)
    report = sweep(lambda work: None, GRACE.model_copy(update={"rejected_retention_s": 2 * 3600}))
    assert report.pruned_rejections == 1
    assert report.counts() == {**dict.fromkeys(report.counts(), 0), "pruned_rejections": 1}
    assert report.total() == 1
    with transaction() as s:
        left = set(s.scalars(select(WebhookDelivery.id)))
    assert left == {ids[1], ids[2], int(kept_verified)}


def test_a_new_report_counts_nothing():
    report = SweepReport()
    assert report.counts() == {
        "resubmitted_pending": 0,
        "redriven_deliveries": 0,
        "result_fetches": 0,
        "polled": 0,
        "outcome_unknown_resubmitted": 0,
        "outcome_unknown_failed": 0,
        "notifications_due": 0,
        "files_to_store": 0,
        "pruned_rejections": 0,
    }
    assert report.total() == 0 and report.errors == []
