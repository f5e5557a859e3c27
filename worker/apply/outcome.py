"""Apply a job's final outcome, whoever learned it first (webhook, poll, result fetch)."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.orm import Session

from falbridge.models.db import transaction
from falbridge.models.jobs import add_result_files, lock_job, transition
from falbridge.models.states import EventSource, JobStatus
from falbridge.models.tables import Job
from falbridge.worker.apply.result_files import find_files
from falbridge.worker.storage.dispatch import store_after_commit

CANCELLED_ERROR_TYPES = frozenset({"client_cancelled"})


def complete(
    session: Session, job: Job, output: Any, source: EventSource, detail: dict[str, Any] | None = None
) -> bool:
    """Completed with its result and files; False if the job was already terminal.

    Files are written only by the transaction that won the transition, so concurrent
    duplicate callbacks cannot produce two sets of rows.
    """
    if not transition(session, job, JobStatus.COMPLETED, source, detail, result=output, result_pending=False):
        return False
    if add_result_files(session, job.id, find_files(output)):
        store_after_commit(session, job.id, job.endpoint_id)  # falbridge.worker.storage
    return True


def fail(
    session: Session,
    job: Job,
    source: EventSource,
    *,
    error: str,
    error_type: str | None = None,
    error_detail: Any = None,
    detail: dict[str, Any] | None = None,
) -> bool:
    target = JobStatus.CANCELLED if error_type in CANCELLED_ERROR_TYPES else JobStatus.FAILED
    if target is JobStatus.CANCELLED:
        # fal ends a cancelled request as an error ("Invalid status code: 499"); the job
        # says what happened to it, fal's own words stay in error_detail.
        error_detail = error_detail if error_detail is not None else error
        error = "cancelled at fal"
    return transition(
        session,
        job,
        target,
        source,
        detail,
        error=error[:4000],
        error_type=error_type,
        error_detail=error_detail,
        result_pending=False,
    )


def fail_job(
    job_id: uuid.UUID,
    source: EventSource,
    *,
    error: str,
    error_type: str | None = None,
    error_detail: Any = None,
) -> bool:
    """`fail` in a transaction of its own, the job locked; False if it is gone or already final."""
    with transaction() as s:
        job = lock_job(s, job_id)
        return job is not None and fail(
            s, job, source, error=error, error_type=error_type, error_detail=error_detail
        )


def cancel_unsubmitted(session: Session, job: Job) -> bool:
    """Cancelled here and now: fal never got this job, so nobody needs asking."""
    return transition(
        session,
        job,
        JobStatus.CANCELLED,
        EventSource.CANCEL,
        error="cancelled before it was submitted",
        error_type="client_cancelled",
    )


def error_fields_from_body(body: Any) -> tuple[str | None, Any]:
    """(error_type, detail) out of a fal error body: `{"detail": [...]}` or
    `{"detail": "text", "error_type": "..."}`; anything else is kept whole as the detail."""
    if isinstance(body, dict):
        error_type = body.get("error_type") if isinstance(body.get("error_type"), str) else None
        detail = body.get("detail")
        # A model's own error has a detail list and no error_type: its first entry's type
        # (e.g. file_download_error) says more than a generic label.
        if error_type is None and isinstance(detail, list):
            first = detail[0] if detail and isinstance(detail[0], dict) else {}
            error_type = first.get("type") if isinstance(first.get("type"), str) else "validation_error"
        return error_type, body.get("detail", body)
    return None, body
