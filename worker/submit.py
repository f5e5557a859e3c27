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

import enum
import logging
import random
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy.orm import Session

from falbridge import config
from falbridge.models.db import transaction
from falbridge.models.jobs import lock_job, parse_uuid, transition
from falbridge.models.states import EventSource, JobStatus
from falbridge.models.tables import Job, utcnow
from falbridge.worker import flow, followup, metrics
from falbridge.worker.apply.outcome import cancel_unsubmitted, fail
from falbridge.worker.fal import (
    FinalError,
    InputValidationError,
    OutcomeUnknownError,
    RetryableError,
    Submission,
    get_client,
)
from falbridge.worker.fal.job_options import submit_headers
from falbridge.worker.followup import FollowUp
from falbridge.worker.webhook_url import webhook_url

log = logging.getLogger(__name__)


class Submitted(enum.StrEnum):
    """What a submit attempt did."""

    SUBMITTED = "submitted"
    FINISHED_FIRST = "submitted after a callback had finished the job"
    OUTCOME_UNKNOWN = "outcome unknown"  # sent, but whether fal took it is not known
    REJECTED = "rejected"  # fal refused it for good: the job failed
    GAVE_UP = "gave up"  # retryable errors until the retries ran out: the job failed
    CANCELLED = "cancelled before it was submitted"
    WAITING = "waiting"  # flow control holds it back, or its retry time has not come
    NOT_PENDING = "not pending"  # submitted, finished or outcome_unknown already
    LEASED = "leased by another worker"
    MISSING = "missing"


@dataclass(frozen=True)
class SubmitResult:
    outcome: Submitted
    follow_ups: tuple[FollowUp, ...] = ()


@dataclass(frozen=True)
class Claim:
    job_id: uuid.UUID
    endpoint_id: str
    input: dict[str, Any]
    options: dict[str, Any] | None = None  # the job's fal options, sent as headers


def claim(job_id: uuid.UUID | str, *, resubmit: bool = False) -> Claim | Submitted:
    """Take a pending job, or (resubmit=True, the sweeper's policy) an outcome_unknown job
    that was never resubmitted before; else say why not."""
    job_uuid = parse_uuid(job_id)
    with transaction() as s:
        job = lock_job(s, job_uuid) if job_uuid else None
        if job is None:
            return Submitted.MISSING
        if resubmit and job.status == JobStatus.OUTCOME_UNKNOWN.value and job.resubmitted_at is None:
            return _lease(job, resubmission=True)
        if job.status != JobStatus.PENDING.value:
            return Submitted.NOT_PENDING
        if job.cancel_requested_at is not None:
            cancel_unsubmitted(s, job)
            return Submitted.CANCELLED
        if job.submit_lease_until is not None and job.submit_lease_until <= utcnow():
            transition(
                s,
                job,
                JobStatus.OUTCOME_UNKNOWN,
                EventSource.SUBMIT,
                {"reason": "submit lease expired: a worker died mid-submit"},
                submit_lease_until=None,
            )
            return Submitted.OUTCOME_UNKNOWN
        if job.submit_lease_until is None and not _may_go(s, job):
            return Submitted.WAITING
        return _lease(job, resubmission=False)


def _may_go(s: Session, job: Job) -> bool:
    """Its retry time has come and flow control has room for it (worker.flow; the batched
    claim, worker.claim, asks the same of every job it takes)."""
    now = utcnow()
    if job.submit_retry_at is not None and job.submit_retry_at > now:
        return False
    settings = config.current().flow
    flow.serialise_claims(s, settings)
    return flow.room(s, settings).take(job.endpoint_id) and flow.take_tokens(s, 1, settings, now).granted == 1


def _lease(job: Job, *, resubmission: bool) -> Claim | Submitted:
    now = utcnow()
    if job.submit_lease_until is not None and job.submit_lease_until > now:
        return Submitted.LEASED
    if resubmission:
        job.resubmitted_at = now
    job.submit_lease_until = now + timedelta(seconds=config.current().submit.lease_s)
    job.submit_attempts += 1
    job.submit_retry_at = None
    return Claim(job.id, job.endpoint_id, dict(job.input), job.options)


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


def submit(job_id: uuid.UUID | str, *, resubmit: bool = False) -> SubmitResult:
    """Claim, call fal, record. Raises RetryableError (claim released) for the caller to
    retry; every other outcome is recorded on the job before this returns."""
    claimed = claim(job_id, resubmit=resubmit)
    if not isinstance(claimed, Claim):
        return SubmitResult(claimed)
    try:
        with metrics.fal_submit(claimed.endpoint_id):
            submission = get_client().submit(
                claimed.endpoint_id,
                claimed.input,
                webhook_url=webhook_url(claimed.job_id),
                headers=submit_headers(claimed.options),
            )
    except RetryableError:
        release(claimed.job_id)
        raise
    except OutcomeUnknownError as exc:
        _outcome_unknown(claimed.job_id, str(exc))
        return SubmitResult(Submitted.OUTCOME_UNKNOWN)
    except (FinalError, InputValidationError) as exc:
        _rejected(claimed.job_id, exc)
        return SubmitResult(Submitted.REJECTED)
    return record_submission(claimed.job_id, submission)


def _outcome_unknown(job_id: uuid.UUID, reason: str) -> None:
    with transaction() as s:
        job = lock_job(s, job_id)
        if job is not None:
            outcome_unknown_in(s, job, reason)


def outcome_unknown_in(s: Session, job: Job, reason: str) -> None:
    transition(
        s, job, JobStatus.OUTCOME_UNKNOWN, EventSource.SUBMIT, {"reason": reason}, submit_lease_until=None
    )


def _rejected(job_id: uuid.UUID, exc: FinalError | InputValidationError) -> None:
    with transaction() as s:
        job = lock_job(s, job_id)
        if job is not None:
            rejected_in(s, job, exc)


def rejected_in(s: Session, job: Job, exc: FinalError | InputValidationError) -> None:
    # InputValidationError: stored before a validation rule changed; nothing was sent.
    if isinstance(exc, FinalError):
        error_type, detail = exc.error_type or f"http_{exc.status_code}", exc.detail
    else:
        error_type, detail = "invalid_input", exc.errors
    job.submit_lease_until = None
    fail(s, job, EventSource.SUBMIT, error=str(exc), error_type=error_type, error_detail=detail)


def record_submission(job_id: uuid.UUID, submission: Submission) -> SubmitResult:
    """Write fal's answer to a submit; a cancel asked for meanwhile is passed on to fal."""
    with transaction() as s:
        job = lock_job(s, job_id)
        if job is None:
            return SubmitResult(Submitted.MISSING)
        return record_in(s, job, submission)


def record_in(s: Session, job: Job, submission: Submission) -> SubmitResult:
    """`record_submission` within the caller's transaction, the job locked."""
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
    moved = transition(s, job, JobStatus.SUBMITTED, EventSource.SUBMIT, {"request_id": submission.request_id})
    if not moved and job.request_id != submission.request_id:
        log.warning(
            "job %s finished by request %s; resubmission %s was also accepted by fal",
            job.id,
            job.request_id,
            submission.request_id,
        )
    cancel = job.cancel_requested_at is not None and not job.job_status.is_terminal
    follow_ups = (followup.cancel_at_fal(job.id),) if cancel else ()
    return SubmitResult(Submitted.SUBMITTED if moved else Submitted.FINISHED_FIRST, follow_ups)


def give_up(job_id: uuid.UUID | str, error: Exception) -> SubmitResult:
    """Retries exhausted on retryable errors: fal never took the job, so it failed."""
    job_uuid = parse_uuid(job_id)
    with transaction() as s:
        job = lock_job(s, job_uuid) if job_uuid else None
        if job is not None:
            give_up_in(s, job, error)
    return SubmitResult(Submitted.GAVE_UP)


def give_up_in(s: Session, job: Job, error: Exception) -> None:
    # outcome_unknown only when resubmitting: the first attempt may still call back,
    # but the resubmission is over, and a job must end.
    if job.status in (JobStatus.PENDING.value, JobStatus.OUTCOME_UNKNOWN.value):
        job.submit_lease_until = None
        fail(
            s,
            job,
            EventSource.SUBMIT,
            error=f"fal unavailable after retries: {error}",
            error_type="submit_retries_exhausted",
        )


def retry_delay(retries: int, retry_after: float | None) -> float:
    """How long a refused submit waits before its next attempt (`retries` made so far):
    fal's Retry-After wins; otherwise exponential with jitter, capped at a minute."""
    if retry_after is not None:
        return min(retry_after, 300.0)
    ceiling: float = min(60.0, 0.5 * 2**retries)
    return ceiling * random.uniform(0.5, 1.5)
