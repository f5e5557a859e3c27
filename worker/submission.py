"""Submitting a job to fal, exactly once or visibly not at all.

The network call happens between two short transactions and never under a lock:
  1. claim: lock the row; only a pending job with no live lease is taken; set a lease.
  2. call fal (no transaction open, so a callback racing the response can be stored).
  3. record: write fal's ids and URLs, move to `submitted` (unless a callback already
     finished the job), release the lease.
A worker that dies during 2 leaves an expired lease on a pending job. Whoever finds
it next (a redelivered task or the sweeper) cannot know whether fal got the request, so
the job goes to `outcome_unknown`, never straight back to fal.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

from falbridge.models.db import transaction
from falbridge.models.jobs import lock_job, parse_uuid, transition
from falbridge.models.states import EventSource, JobStatus
from falbridge.models.tables import utcnow
from falbridge.worker.fal import (
    FinalError,
    InputValidationError,
    OutcomeUnknownError,
    RetryableError,
    get_client,
)
from falbridge.worker.outcomes import fail
from falbridge.worker.settings import settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Claim:
    job_id: uuid.UUID
    endpoint_id: str
    input: dict[str, Any]


def webhook_url_for(job_id: uuid.UUID) -> str:
    # Our job id rides along so a callback that beats the submit response finds its job.
    return f"{settings().webhook_url_base}?{urlencode({'job': str(job_id)})}"


def claim(job_id: uuid.UUID | str, *, resubmit: bool = False) -> tuple[Claim | None, str]:
    """Take a pending job, or (resubmit=True, the reconciler's policy) an outcome_unknown
    job that was never resubmitted before."""
    job_uuid = parse_uuid(job_id)
    with transaction() as s:
        job = lock_job(s, job_uuid) if job_uuid else None
        if job is None:
            return None, "missing"
        now = utcnow()
        if resubmit and job.status == JobStatus.OUTCOME_UNKNOWN.value and job.resubmitted_at is None:
            if job.submit_lease_until is not None and job.submit_lease_until > now:
                return None, "leased by another worker"
            job.resubmitted_at = now
            job.submit_lease_until = now + timedelta(seconds=settings().submit_lease_s)
            job.submit_attempts += 1
            return Claim(job.id, job.endpoint_id, dict(job.input)), "claimed for resubmission"
        if job.status != JobStatus.PENDING.value:
            return None, f"already {job.status}"
        if job.cancel_requested_at is not None:
            transition(
                s,
                job,
                JobStatus.CANCELLED,
                EventSource.CANCEL,
                error="cancelled before it was submitted",
                error_type="client_cancelled",
            )
            return None, "cancelled"
        if job.submit_lease_until is not None:
            if job.submit_lease_until > now:
                return None, "leased by another worker"
            transition(
                s,
                job,
                JobStatus.OUTCOME_UNKNOWN,
                EventSource.SUBMIT,
                {"reason": "submit lease expired: a worker died mid-submit"},
                submit_lease_until=None,
            )
            return None, "outcome unknown"
        job.submit_lease_until = now + timedelta(seconds=settings().submit_lease_s)
        job.submit_attempts += 1
        return Claim(job.id, job.endpoint_id, dict(job.input)), "claimed"


def release(job_id: uuid.UUID) -> None:
    """Give the claim back after fal provably did not take the request (retryable error)."""
    with transaction() as s:
        job = lock_job(s, job_id)
        if job is not None and job.status in (JobStatus.PENDING.value, JobStatus.OUTCOME_UNKNOWN.value):
            job.submit_lease_until = None
            if job.status == JobStatus.OUTCOME_UNKNOWN.value:
                # The resubmission was refused, so it did not happen: let the task's retry
                # claim it again. Otherwise the retry finds resubmitted_at set, does
                # nothing, and the job is failed as "outcome unknown" unresubmitted
                # (seen in bench/chaos.py after a 503 on a resubmit).
                job.resubmitted_at = None


def submit(job_id: uuid.UUID | str, *, resubmit: bool = False) -> str:
    """Returns what happened, for logs. Raises RetryableError for the task to retry."""
    claimed, outcome = claim(job_id, resubmit=resubmit)
    if claimed is None:
        return outcome
    try:
        submission = get_client().submit(
            claimed.endpoint_id, claimed.input, webhook_url=webhook_url_for(claimed.job_id)
        )
    except RetryableError:
        release(claimed.job_id)
        raise
    except OutcomeUnknownError as exc:
        with transaction() as s:
            job = lock_job(s, claimed.job_id)
            transition(
                s,
                job,
                JobStatus.OUTCOME_UNKNOWN,
                EventSource.SUBMIT,
                {"reason": str(exc)},
                submit_lease_until=None,
            )
        return "outcome unknown"
    except (FinalError, InputValidationError) as exc:
        # InputValidationError: stored before a validation rule changed; nothing was sent.
        error_type = getattr(exc, "error_type", None) or (
            f"http_{exc.status_code}" if isinstance(exc, FinalError) else "invalid_input"
        )
        detail = exc.detail if isinstance(exc, FinalError) else exc.errors
        with transaction() as s:
            job = lock_job(s, claimed.job_id)
            job.submit_lease_until = None
            fail(s, job, EventSource.SUBMIT, error=str(exc), error_type=error_type, error_detail=detail)
        return "rejected"
    return record_submission(claimed.job_id, submission)


def record_submission(job_id: uuid.UUID, submission) -> str:
    with transaction() as s:
        job = lock_job(s, job_id)
        # A callback that raced this response may have bound the same id already.
        if job.request_id is None or not job.job_status.is_terminal:
            job.request_id = submission.request_id  # the submit response is authoritative
        # else: a callback already finished the job; keep the request id that produced it.
        job.gateway_request_id = submission.gateway_request_id
        job.status_url, job.response_url = submission.status_url, submission.response_url
        job.cancel_url = submission.cancel_url
        job.submitted_at = job.submitted_at or utcnow()
        job.submit_lease_until = None
        # No flush first: transition() writes these pending changes in its own UPDATE.
        moved = transition(
            s, job, JobStatus.SUBMITTED, EventSource.SUBMIT, {"request_id": submission.request_id}
        )
        if not moved and job.request_id != submission.request_id:
            log.warning(
                "job %s finished by request %s; resubmission %s was also accepted by fal",
                job_id,
                job.request_id,
                submission.request_id,
            )
        needs_cancel = job.cancel_requested_at is not None and not job.job_status.is_terminal
    if needs_cancel:
        from falbridge.worker.celery_app import enqueue
        from falbridge.worker.tasks import cancel_job

        enqueue(cancel_job, str(job_id))
    return "submitted" if moved else f"submitted (job already {job.status})"


def give_up(job_id: uuid.UUID | str, error: Exception) -> None:
    """Retries exhausted on retryable errors: fal never took the job, so it failed."""
    job_uuid = parse_uuid(job_id)
    with transaction() as s:
        job = lock_job(s, job_uuid)
        # outcome_unknown only when resubmitting: the first attempt may still call back,
        # but the resubmission is over, and a job must end.
        if job is not None and job.status in (JobStatus.PENDING.value, JobStatus.OUTCOME_UNKNOWN.value):
            job.submit_lease_until = None
            fail(
                s,
                job,
                EventSource.SUBMIT,
                error=f"fal unavailable after retries: {error}",
                error_type="submit_retries_exhausted",
            )
