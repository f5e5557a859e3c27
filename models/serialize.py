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

from falbridge.models.tables import Job, JobEvent, ResultFile


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
        "status_url": job.status_url,
        "response_url": job.response_url,
        "cancel_url": job.cancel_url,
        "result": job.result,
        "files": [file_dict(f) for f in job.files],
        "events": [event_dict(e) for e in job.events],
    }


def file_dict(f: ResultFile) -> dict[str, Any]:
    return {
        "id": f.id,
        "path": f.path,
        "url": f.url,
        "content_type": f.content_type,
        "file_name": f.file_name,
        "file_size": f.file_size,
        "width": f.width,
        "height": f.height,
    }


def event_dict(e: JobEvent) -> dict[str, Any]:
    return {
        "at": iso(e.at),
        "source": e.source,
        "from_status": e.from_status,
        "to_status": e.to_status,
        "detail": e.detail,
    }
