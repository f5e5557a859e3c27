"""Jobs as JSON-ready dicts: the shapes the HTTP API returns.

Pure functions of the ORM rows (no Flask), so the same shapes can be reused elsewhere.
`job_detail` needs `files` and `events` loaded (`get_job(..., full=True)`): the rows are
detached by then, and a lazy load would fail.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Row

from falbridge.models.event_message import EventView
from falbridge.models.tables import (
    DeliveryAttempt,
    EventDelivery,
    Job,
    JobEvent,
    ResultFile,
    StoredFile,
    Subscription,
)


def iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat() if value is not None else None


def _id(value: uuid.UUID | None) -> str | None:
    return str(value) if value is not None else None


def job_summary(job: Job | Row[Any]) -> dict[str, Any]:
    """Everything but the bulky parts (input, result, files, events) and fal's URLs."""
    return {
        "id": _id(job.id),
        "endpoint_id": job.endpoint_id,
        "status": job.status,
        "external_id": job.external_id,
        "metadata": job.meta,
        "request_id": job.request_id,
        "gateway_request_id": job.gateway_request_id,
        "result_pending": bool(job.result_pending),
        "error": job.error,
        "error_type": job.error_type,
        "error_detail": job.error_detail,
        "created_at": iso(job.created_at),
        "updated_at": iso(job.updated_at),
        "submitted_at": iso(job.submitted_at),
        "completed_at": iso(job.completed_at),
        "cancel_requested_at": iso(job.cancel_requested_at),
        "last_polled_at": iso(job.last_polled_at),
        "resubmitted_at": iso(job.resubmitted_at),
        "submit_attempts": job.submit_attempts,
        "poll_attempts": job.poll_attempts,
        "webhook_count": job.webhook_count,
    }


def job_detail(job: Job) -> dict[str, Any]:
    return {
        **job_summary(job),
        "input": job.input,
        **job_outputs(job, files_dicts(job), [event_dict(e) for e in job.events]),
    }


def job_outputs(
    job: Job | Row[Any], files: list[dict[str, Any]], events: list[dict[str, Any]]
) -> dict[str, Any]:
    """What `job_detail` shows after the summary and the input: fal's URLs, the result,
    the files and events given, the options (an outgoing message shares it)."""
    return {
        "status_url": job.status_url,
        "response_url": job.response_url,
        "cancel_url": job.cancel_url,
        "result": job.result,
        "files": files,
        "events": events,
        "options": job.options,
        "priority": job.priority,
    }


def files_dicts(job: Job) -> list[dict[str, Any]]:
    stored = {s.path: s for s in job.stored_files}
    return [file_dict(f, stored.get(f.path)) for f in job.files]


def download_path(job_id: uuid.UUID, file_id: int) -> str:
    """The route serving falbridge's copy, relative to the API's base URL."""
    return f"/api/jobs/{job_id}/files/{file_id}"


def file_dict(f: ResultFile | Row[Any], stored: StoredFile | Row[Any] | None = None) -> dict[str, Any]:
    """A result file as fal described it, and falbridge's copy: `status` stored, missing
    (with `missing_reason`), or null while it is not stored (yet, or not at all)."""
    kept = stored is not None and stored.status == "stored"
    return {
        "id": f.id,
        "path": f.path,
        "url": f.url,
        "content_type": f.content_type,
        "file_name": f.file_name,
        "file_size": f.file_size,
        "width": f.width if f.width is not None or stored is None else stored.width,
        "height": f.height if f.height is not None or stored is None else stored.height,
        "fal_url": f.url,
        "status": stored.status if stored is not None else None,
        "missing_reason": stored.reason if stored is not None and not kept else None,
        "sha256": stored.sha256 if kept and stored else None,
        "size": stored.size if kept and stored else None,
        "sniffed_type": stored.sniffed_type if kept and stored else None,
        "stored_at": iso(stored.stored_at) if stored is not None else None,
        "download_url": download_path(f.job_id, f.id) if kept else None,
    }


def event_dict(e: JobEvent | Row[Any] | EventView) -> dict[str, Any]:
    return {
        "at": iso(e.at),
        "source": e.source,
        "from_status": e.from_status,
        "to_status": e.to_status,
        "detail": e.detail,
    }


def subscription_dict(s: Subscription) -> dict[str, Any]:
    """A subscription as the API shows it: never its secret (shown once, when made or
    rotated, beside these fields)."""
    return {
        "id": _id(s.id),
        "url": s.url,
        "events": list(s.events),
        "description": s.description,
        "enabled": bool(s.enabled),
        "disabled_reason": s.disabled_reason,
        "failing_since": iso(s.failing_since),
        "previous_secret_expires_at": iso(s.previous_secret_expires_at),
        "created_at": iso(s.created_at),
        "updated_at": iso(s.updated_at),
    }


def delivery_dict(d: EventDelivery, attempts: list[DeliveryAttempt]) -> dict[str, Any]:
    return {
        "id": d.id,
        "event_id": d.event_id,
        "subscription_id": _id(d.subscription_id),
        "target": d.target,
        "status": d.status,
        "attempts": d.attempts,
        "next_attempt_at": iso(d.next_attempt_at),
        "last_status_code": d.last_status_code,
        "last_error": d.last_error,
        "created_at": iso(d.created_at),
        "delivered_at": iso(d.delivered_at),
        "attempt_log": [attempt_dict(a) for a in attempts],
    }


def attempt_dict(a: DeliveryAttempt) -> dict[str, Any]:
    return {
        "at": iso(a.at),
        "status_code": a.status_code,
        "latency_ms": a.latency_ms,
        "response_head": a.response_head,
        "error": a.error,
    }
