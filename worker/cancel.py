"""Cancel a job: at once if fal has not got it yet, else by asking fal, whose answer then
arrives like any other outcome (a callback, or the sweeper's poll)."""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass

from falbridge.models.db import transaction
from falbridge.models.jobs import get_job, lock_job, parse_uuid
from falbridge.models.states import EventSource, JobStatus
from falbridge.models.tables import utcnow
from falbridge.worker import followup
from falbridge.worker.apply.outcome import cancel_unsubmitted, fail_job
from falbridge.worker.fal import CancelOutcome, get_client
from falbridge.worker.followup import FollowUp
from falbridge.worker.queue_ref import request_ref


class Cancellation(enum.StrEnum):
    MISSING = "missing"
    ALREADY_TERMINAL = "already terminal"
    CANCELLED = "cancelled"  # never reached fal: cancelled here and now
    REQUESTED = "cancel requested"  # fal has it (or is being given it): fal decides


@dataclass(frozen=True)
class CancelRequest:
    outcome: Cancellation
    follow_ups: tuple[FollowUp, ...] = ()


def request_cancel(job_id: uuid.UUID | str) -> CancelRequest:
    """Mark a cancel request; the follow-up asks fal when fal has the job. A job being
    submitted right now is asked about once its submit is recorded (falbridge.worker.submit)."""
    job_uuid = parse_uuid(job_id)
    with transaction() as s:
        job = lock_job(s, job_uuid) if job_uuid else None
        if job is None:
            return CancelRequest(Cancellation.MISSING)
        if job.job_status.is_terminal:
            return CancelRequest(Cancellation.ALREADY_TERMINAL)
        job.cancel_requested_at = job.cancel_requested_at or utcnow()
        if job.status == JobStatus.PENDING.value and job.submit_lease_until is None:
            cancel_unsubmitted(s, job)
            return CancelRequest(Cancellation.CANCELLED)
        ask_fal = (followup.cancel_at_fal(job.id),) if job.request_id is not None else ()
        return CancelRequest(Cancellation.REQUESTED, ask_fal)


def cancel_at_fal(job_id: uuid.UUID | str) -> CancelOutcome | None:
    """Ask fal to cancel; None when there is nothing to ask about. RetryableError propagates."""
    job_uuid = parse_uuid(job_id)
    with transaction() as s:
        job = get_job(s, job_uuid) if job_uuid else None
        if job_uuid is None or job is None or job.request_id is None or job.job_status.is_terminal:
            return None
        ref = request_ref(job)
    outcome = get_client().cancel(ref)
    if outcome == CancelOutcome.NOT_FOUND:
        fail_job(
            job_uuid,
            EventSource.CANCEL,
            error="fal does not know this request any more",
            error_type="client_cancelled",
        )
    return outcome
