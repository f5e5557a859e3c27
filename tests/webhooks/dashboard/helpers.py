"""Jobs made through the model layer (as the API and the worker make them), logging in
through the form, and reading the dashboard's pages."""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timedelta
from typing import Any

from falbridge.models.db import transaction
from falbridge.models.jobs import create_job, lock_job
from falbridge.models.states import EventSource
from falbridge.worker.apply.outcome import complete, fail_job
from tests.plugins.pipeline import TEST_API_TOKEN

EVF_SAM = "fal-ai/evf-sam"
FLORENCE = "fal-ai/florence-2-large/region-proposal"
CAT = "https://cdn.example.test/cat.png"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_of(html: str) -> str:
    found = _CSRF.search(html)
    assert found, "no CSRF field on the page"
    return found[1]


def log_in(client: Any, token: str = TEST_API_TOKEN) -> Any:
    form = client.get("/dashboard/login")
    return client.post("/dashboard/login", data={"token": token, "csrf_token": csrf_of(form.text)})


def make_job(
    endpoint_id: str = EVF_SAM,
    input: dict[str, Any] | None = None,
    *,
    external_id: str | None = None,
    metadata: dict[str, Any] | None = None,
    status: str | None = None,
    created_at: datetime | None = None,
    request_id: str | None = None,
    input_files: list[dict[str, Any]] | None = None,
    options: dict[str, Any] | None = None,
) -> uuid.UUID:
    with transaction() as s:
        job, _ = create_job(
            s,
            endpoint_id,
            input or {"prompt": "cat", "image_url": CAT},
            external_id=external_id,
            metadata=metadata,
            input_files=input_files,
            options=options,
        )
        if status is not None:
            job.status = status
        if created_at is not None:
            job.created_at = created_at
        job.request_id = request_id
        return job.id


def make_jobs(count: int, start: datetime, **fields: Any) -> list[uuid.UUID]:
    return [make_job(created_at=start + timedelta(seconds=n), **fields) for n in range(count)]


def completed(job_id: uuid.UUID, output: dict[str, Any]) -> None:
    """Completed with `output`, as a webhook would complete it."""
    with transaction() as s:
        job = lock_job(s, job_id)
        assert job is not None
        job.status = "in_progress"
    with transaction() as s:
        job = lock_job(s, job_id)
        assert job is not None and complete(s, job, output, EventSource.WEBHOOK)


def failed(job_id: uuid.UUID, error: str, error_type: str = "fal_error") -> None:
    fail_job(job_id, EventSource.WEBHOOK, error=error, error_type=error_type)


def florence_boxes(*boxes: tuple[float, float, float, float, str]) -> dict[str, Any]:
    return {
        "results": {
            "bboxes": [{"x": x, "y": y, "w": w, "h": h, "label": label} for x, y, w, h, label in boxes]
        }
    }
