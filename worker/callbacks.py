"""fal's webhook body: parse it tolerantly (fal-api.md §2.2) and apply it to its job."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from falbridge.models.db import transaction
from falbridge.models.jobs import lock_job, lock_job_by_request_id, parse_uuid
from falbridge.models.states import EventSource
from falbridge.models.tables import Job, WebhookDelivery, utcnow
from falbridge.worker.outcomes import complete, error_fields_from_body, fail

log = logging.getLogger(__name__)


class CallbackFormatError(ValueError):
    pass


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"{text} is out of range")
    return value


def strict_json_loads(data: bytes | str):
    """JSON as RFC 8259 has it: no NaN or Infinity, no number that overflows to one.
    PostgreSQL's jsonb refuses those, and no JSON client could read them back."""
    return json.loads(data, parse_constant=_refuse_constant, parse_float=_finite_float)


@dataclass(frozen=True)
class Callback:
    request_id: str
    gateway_request_id: str | None
    ok: bool
    payload: Any
    payload_error: str | None
    error: str | None

    @property
    def needs_fetch(self) -> bool:
        """fal could not put the output in the body; it must be fetched from the queue."""
        return self.payload is None and self.payload_error is not None


def parse_callback(body: bytes) -> Callback:
    try:
        doc = strict_json_loads(body)
    except RecursionError:
        raise CallbackFormatError("body is nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise CallbackFormatError(f"body is not strict JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise CallbackFormatError("body is not a JSON object")
    request_id = doc.get("request_id")
    if not isinstance(request_id, str) or not request_id:
        raise CallbackFormatError("body has no request_id")
    status = doc.get("status")
    if status not in ("OK", "ERROR"):
        raise CallbackFormatError(f"unknown callback status {status!r}")
    gateway = doc.get("gateway_request_id")
    payload_error = doc.get("payload_error")
    error = doc.get("error")
    return Callback(
        request_id=request_id,
        gateway_request_id=gateway if isinstance(gateway, str) else None,
        ok=status == "OK",
        payload=doc.get("payload"),
        payload_error=str(payload_error) if payload_error is not None else None,
        error=str(error) if error is not None else None,
    )


def process_delivery(delivery_id: int) -> tuple[str, str | None]:
    """Apply one stored, verified delivery. Returns (outcome, job id to fetch a result for).

    Safe to run any number of times: a processed delivery is skipped, and the job's state
    machine ignores a second terminal outcome.
    """
    with transaction() as s:
        delivery = s.scalar(
            select(WebhookDelivery).where(WebhookDelivery.id == delivery_id).with_for_update()
        )
        if delivery is None or delivery.processed_at is not None or not delivery.verified:
            return "skipped", None
        outcome, fetch_for = _apply(s, delivery)
        delivery.outcome = outcome
        delivery.processed_at = utcnow()
        return outcome, fetch_for


def _apply(s, delivery: WebhookDelivery) -> tuple[str, str | None]:
    try:
        callback = parse_callback(delivery.body)
    except CallbackFormatError as exc:
        delivery.processing_error = str(exc)
        return "unparseable", None
    # Found and locked in one statement, before writing anything that references it: the
    # foreign-key check of delivery.job_id takes a share lock on the job row, and two
    # processes each holding that share lock while asking for FOR UPDATE deadlock (seen
    # on PostgreSQL).
    job = _find_job(s, delivery, callback)
    if job is None:
        return "unknown_job", None
    delivery.job_id = job.id
    if job.request_id is None:
        job.request_id = callback.request_id
    elif job.request_id != callback.request_id:
        # Signed by fal, but for someone else's request: never let it touch this job.
        delivery.processing_error = f"request id {callback.request_id} is not this job's"
        return "request_id_mismatch", None
    job.gateway_request_id = callback.gateway_request_id or job.gateway_request_id
    job.webhook_count += 1
    detail = {"delivery_id": delivery.id}
    if job.job_status.is_terminal:
        return "duplicate", None
    if callback.needs_fetch:
        job.result_pending = True
        return "result_fetch_needed", str(job.id)
    if callback.ok:
        complete(s, job, callback.payload, EventSource.WEBHOOK, detail)
        return "applied", None
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
    return "applied", None


def _find_job(s, delivery: WebhookDelivery, callback: Callback) -> Job | None:
    """The callback's job, locked for the rest of the transaction."""
    job = lock_job_by_request_id(s, callback.request_id)
    if job is not None:
        return job
    # Not bound yet: the callback beat the submit response. Our job id in the URL says
    # which job it is; the request-id check in _apply keeps a bound job safe.
    claimed = parse_uuid(str((delivery.headers or {}).get("query_job_id") or ""))
    return lock_job(s, claimed) if claimed else None
