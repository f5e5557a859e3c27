"""Asking fal's queue directly: fetch a result we were not given, and cancel a job."""

from __future__ import annotations

import json
import uuid
from typing import Any

from sqlalchemy import update

from falbridge.models.db import transaction
from falbridge.models.jobs import get_job, lock_job, parse_uuid, transition
from falbridge.models.states import EventSource, JobStatus
from falbridge.models.tables import Job, utcnow
from falbridge.worker.fal import CancelOutcome, FinalError, ModelError, RequestRef, get_client
from falbridge.worker.outcomes import complete, error_fields_from_body, fail


def _ref(job) -> RequestRef:
    return RequestRef(
        endpoint_id=job.endpoint_id,
        request_id=job.request_id,
        status_url=job.status_url,
        response_url=job.response_url,
        cancel_url=job.cancel_url,
    )


def fetch_result(job_id: uuid.UUID | str, source: EventSource = EventSource.POLL) -> str:
    """GET the result of a job fal finished but whose output we don't have.

    RetryableError propagates (the task retries). A model error or an expired result
    ends the job as failed: the result can never be had any more.
    """
    with transaction() as s:
        job = get_job(s, job_id)
        if job is None or job.request_id is None:
            return "nothing to fetch"
        if job.job_status.is_terminal and not job.result_pending:
            return f"already {job.status}"
        ref = _ref(job)
    try:
        output: Any = get_client().result(ref)
    except ModelError as exc:
        error_type, detail = error_fields_from_body({"detail": exc.detail, "error_type": exc.error_type})
        with transaction() as s:
            job = lock_job(s, parse_uuid(job_id))
            fail(
                s,
                job,
                source,
                error=f"Invalid status code: {exc.status_code}",
                error_type=error_type,
                error_detail=detail,
            )
        return "failed"
    except FinalError as exc:
        with transaction() as s:
            job = lock_job(s, parse_uuid(job_id))
            fail(
                s,
                job,
                source,
                error=f"result unavailable at fal: {exc}",
                error_type="result_unavailable",
                error_detail=exc.detail,
            )
        return "result unavailable"
    try:
        json.dumps(output, allow_nan=False)
    except (ValueError, RecursionError):
        # NaN/Infinity in fal's body: jsonb refuses it, and no client could read it back.
        with transaction() as s:
            job = lock_job(s, parse_uuid(job_id))
            fail(
                s,
                job,
                source,
                error="fal returned a result that is not strict JSON (NaN, Infinity or nesting too deep)",
                error_type="invalid_result",
            )
        return "invalid result"
    with transaction() as s:
        job = lock_job(s, parse_uuid(job_id))
        complete(s, job, output, source)
    return "completed"


def request_cancel(job_id: uuid.UUID | str) -> tuple[str, bool]:
    """Mark a cancel request. Returns (what happened, whether fal must be asked)."""
    with transaction() as s:
        job = lock_job(s, parse_uuid(job_id)) if parse_uuid(job_id) else None
        if job is None:
            return "missing", False
        if job.job_status.is_terminal:
            return f"already {job.status}", False
        job.cancel_requested_at = job.cancel_requested_at or utcnow()
        if job.status == JobStatus.PENDING.value and job.submit_lease_until is None:
            transition(
                s,
                job,
                JobStatus.CANCELLED,
                EventSource.CANCEL,
                error="cancelled before it was submitted",
                error_type="client_cancelled",
            )
            return "cancelled", False
        # Submitted (or being submitted): fal decides; the final state arrives as usual.
        return "cancel requested", job.request_id is not None


def cancel_at_fal(job_id: uuid.UUID | str) -> str:
    with transaction() as s:
        job = get_job(s, job_id)
        if job is None or job.request_id is None or job.job_status.is_terminal:
            return "nothing to cancel"
        ref = _ref(job)
    outcome = get_client().cancel(ref)
    if outcome == CancelOutcome.NOT_FOUND:
        with transaction() as s:
            job = lock_job(s, parse_uuid(job_id))
            fail(
                s,
                job,
                EventSource.CANCEL,
                error="fal does not know this request any more",
                error_type="client_cancelled",
            )
    return str(outcome)


def poll(job_id: uuid.UUID | str) -> str:
    """Ask fal about a job whose callback is overdue (dropped, or still being retried)."""
    job_uuid = parse_uuid(job_id)
    with transaction() as s:
        job = get_job(s, job_uuid) if job_uuid else None
        if job is None or job.request_id is None or job.job_status.is_terminal:
            return "nothing to poll"
        ref = _ref(job)
        # Recorded before asking, so a failing poll is not retried every sweep; and
        # without touching updated_at, which measures silence from fal.
        s.execute(
            update(Job)
            .where(Job.id == job_uuid)
            .values(last_polled_at=utcnow(), poll_attempts=Job.poll_attempts + 1, updated_at=Job.updated_at)
        )
    try:
        status = get_client().status(ref)
    except ModelError:
        raise
    except FinalError as exc:
        if exc.status_code != 404:
            raise
        with transaction() as s:
            job = lock_job(s, job_uuid)
            fail(
                s,
                job,
                EventSource.POLL,
                error="fal no longer knows this request (expired or never accepted) and no callback arrived",
                error_type="request_not_found",
            )
        return "not found at fal"
    if status.status == "COMPLETED":
        return fetch_result(job_uuid, EventSource.POLL)
    if status.status == "IN_PROGRESS":
        with transaction() as s:
            job = lock_job(s, job_uuid)
            transition(s, job, JobStatus.IN_PROGRESS, EventSource.POLL)
        return "in progress"
    return status.status.lower()
