"""Fetch a result fal holds but did not send us: after a callback said `payload_error`, or a
poll found the job COMPLETED."""

from __future__ import annotations

import enum
import uuid
from typing import Any

from falbridge import strict_json
from falbridge.models.db import transaction
from falbridge.models.jobs import get_job, lock_job, parse_uuid
from falbridge.models.states import EventSource
from falbridge.worker.apply.outcome import complete, error_fields_from_body, fail_job
from falbridge.worker.fal import FinalError, ModelError, get_client
from falbridge.worker.queue_ref import request_ref


class FetchOutcome(enum.StrEnum):
    NOTHING_TO_FETCH = "nothing to fetch"  # no such job, or fal never accepted it
    ALREADY_TERMINAL = "already terminal"
    COMPLETED = "completed"
    FAILED = "failed"  # the model's own error
    RESULT_EXPIRED = "result expired"  # fal's retention window passed (404)
    RESULT_UNAVAILABLE = "result unavailable"  # refused for good otherwise
    INVALID_RESULT = "invalid result"  # not strict JSON


def fetch_result(job_id: uuid.UUID | str, source: EventSource = EventSource.POLL) -> FetchOutcome:
    """GET the result of a job fal finished but whose output we don't have.

    RetryableError propagates (the task retries). A model error or an expired result
    ends the job as failed: the result can never be had any more. fal keeps a result an
    hour, six minutes once it is 10 KB or more (docs/fal-protocol.md, "Result"): a 404
    without a model's body means that window passed, `result_expired`.
    """
    job_uuid = parse_uuid(job_id)
    with transaction() as s:
        job = get_job(s, job_uuid) if job_uuid else None
        if job_uuid is None or job is None or job.request_id is None:
            return FetchOutcome.NOTHING_TO_FETCH
        if job.job_status.is_terminal and not job.result_pending:
            return FetchOutcome.ALREADY_TERMINAL
        ref = request_ref(job)
    try:
        output: Any = get_client().result(ref)
    except ModelError as exc:
        error_type, detail = error_fields_from_body({"detail": exc.detail, "error_type": exc.error_type})
        fail_job(
            job_uuid,
            source,
            error=f"Invalid status code: {exc.status_code}",
            error_type=error_type,
            error_detail=detail,
        )
        return FetchOutcome.FAILED
    except FinalError as exc:
        if exc.status_code == 404:
            expire_job(job_uuid, source, "fal answered 404 for the result")
            return FetchOutcome.RESULT_EXPIRED
        fail_job(
            job_uuid,
            source,
            error=f"result unavailable at fal: {exc}",
            error_type="result_unavailable",
            error_detail=exc.detail,
        )
        return FetchOutcome.RESULT_UNAVAILABLE
    if not strict_json.is_strict(output):
        # NaN/Infinity in fal's body: jsonb refuses it, and no client could read it back.
        message = "fal returned a result that is not strict JSON (NaN, Infinity or nesting too deep)"
        fail_job(job_uuid, source, error=message, error_type="invalid_result")
        return FetchOutcome.INVALID_RESULT
    try:
        strict_json.check_tree(output, storable=True)
    except strict_json.JSONRejected as exc:
        message = f"fal's result {exc} (at {strict_json.field_name(exc.path)})"
        fail_job(job_uuid, source, error=message, error_type="invalid_result")
        return FetchOutcome.INVALID_RESULT
    with transaction() as s:
        job = lock_job(s, job_uuid)
        if job is not None:
            complete(s, job, output, source)
    return FetchOutcome.COMPLETED


RESULT_EXPIRED = "result_expired"


def expire_job(job_uuid: uuid.UUID, source: EventSource, seen: str) -> bool:
    """Fail a job whose result fal no longer keeps: waiting cannot bring it back."""
    return fail_job(
        job_uuid,
        source,
        error=f"result expired at fal before falbridge fetched it ({seen}; fal keeps a result "
        "an hour after completion, six minutes if it is 10 KB or more)",
        error_type=RESULT_EXPIRED,
    )
