"""Apply one stored, verified delivery (a fal callback) to its job: the one path every
delivery takes, whether a task, the sweeper or `falbridge reconcile` runs it."""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from falbridge.models.db import transaction
from falbridge.models.jobs import lock_job, lock_job_by_request_id, parse_uuid
from falbridge.models.states import EventSource
from falbridge.models.tables import Job, WebhookDelivery, utcnow
from falbridge.worker import followup
from falbridge.worker.apply.callback import Callback, CallbackFormatError, parse_callback
from falbridge.worker.apply.outcome import complete, error_fields_from_body, fail
from falbridge.worker.followup import FollowUp
from falbridge.worker.webhook_url import proves


class DeliveryOutcome(enum.StrEnum):
    """What applying a delivery did; stored in webhook_deliveries.outcome."""

    SKIPPED = "skipped"  # unknown id, already processed, or not verified
    UNPARSEABLE = "unparseable"
    UNKNOWN_JOB = "unknown_job"
    REQUEST_ID_MISMATCH = "request_id_mismatch"
    DUPLICATE = "duplicate"  # the job was already terminal
    RESULT_FETCH_NEEDED = "result_fetch_needed"
    APPLIED = "applied"


@dataclass(frozen=True)
class Applied:
    outcome: DeliveryOutcome
    follow_ups: tuple[FollowUp, ...] = ()


def apply_delivery(delivery_id: int) -> Applied:
    """Apply one stored, verified delivery; the result says what to do next.

    Safe to run any number of times: a processed delivery is skipped, and the job's state
    machine ignores a second terminal outcome.
    """
    with transaction() as s:
        delivery = s.scalar(
            select(WebhookDelivery).where(WebhookDelivery.id == delivery_id).with_for_update()
        )
        if delivery is None or delivery.processed_at is not None or not delivery.verified:
            return Applied(DeliveryOutcome.SKIPPED)
        applied = _apply(s, delivery)
        delivery.outcome = applied.outcome.value
        delivery.processed_at = utcnow()
        return applied


def _apply(s: Session, delivery: WebhookDelivery) -> Applied:
    try:
        callback = parse_callback(delivery.body)
    except CallbackFormatError as exc:
        delivery.processing_error = str(exc)
        return Applied(DeliveryOutcome.UNPARSEABLE)
    # Found and locked in one statement, before writing anything that references it: the
    # foreign-key check of delivery.job_id takes a share lock on the job row, and two
    # processes each holding that share lock while asking for FOR UPDATE deadlock (seen
    # on PostgreSQL).
    job = _find_job(s, delivery, callback)
    if job is None:
        delivery.processing_error = _why_unknown(delivery)
        return Applied(DeliveryOutcome.UNKNOWN_JOB)
    delivery.job_id = job.id
    if job.request_id is None:
        job.request_id = callback.request_id
    elif job.request_id != callback.request_id:
        # Signed by fal, but for someone else's request: never let it touch this job.
        delivery.processing_error = f"request id {callback.request_id} is not this job's"
        return Applied(DeliveryOutcome.REQUEST_ID_MISMATCH)
    job.gateway_request_id = callback.gateway_request_id or job.gateway_request_id
    job.webhook_count += 1
    if job.job_status.is_terminal:
        return Applied(DeliveryOutcome.DUPLICATE)
    if callback.needs_fetch:
        job.result_pending = True
        return Applied(DeliveryOutcome.RESULT_FETCH_NEEDED, (followup.fetch_result(job.id),))
    detail = {"delivery_id": delivery.id}
    if callback.ok:
        complete(s, job, callback.payload, EventSource.WEBHOOK, detail)
    else:
        error_type, error_detail = error_fields_from_body(callback.payload)
        fail(
            s,
            job,
            EventSource.WEBHOOK,
            error=callback.error or "fal reported an error",
            error_type=error_type,
            error_detail=error_detail,
            detail=detail,
        )
    return Applied(DeliveryOutcome.APPLIED)


def _find_job(s: Session, delivery: WebhookDelivery, callback: Callback) -> Job | None:
    """The callback's job, locked for the rest of the transaction."""
    job = lock_job_by_request_id(s, callback.request_id)
    if job is not None:
        return job
    # Not bound yet: the callback beat the submit response, or the submit's outcome is
    # unknown. The job id in our URL says which job it is, if the URL's token proves we
    # made that URL; the request-id check in _apply keeps a bound job safe.
    claimed, token = _url_claim(delivery)
    return lock_job(s, claimed) if claimed is not None and proves(claimed, token) else None


def _url_claim(delivery: WebhookDelivery) -> tuple[uuid.UUID | None, str | None]:
    headers = delivery.headers or {}
    token = headers.get("query_token")
    return parse_uuid(str(headers.get("query_job_id") or "")), token if isinstance(token, str) else None


def _why_unknown(delivery: WebhookDelivery) -> str:
    claimed, token = _url_claim(delivery)
    if claimed is None:
        return "no job has this request id, and the URL names none"
    if not proves(claimed, token):
        return f"no job has this request id, and the URL's job {claimed} comes without a valid token"
    return f"no job has this request id, and job {claimed} does not exist"
