"""Completed jobs whose results point at the sandbox's CDN, and reading them back."""

from __future__ import annotations

import io
import uuid
from typing import Any

from PIL import Image
from sqlalchemy import func, select

from falbridge.models.db import snapshot, transaction
from falbridge.models.jobs import create_job, get_job, lock_job
from falbridge.models.serialize import job_detail
from falbridge.models.states import EventSource
from falbridge.models.tables import JobEvent, StoredFile
from falbridge.worker.apply.outcome import complete


def png(width: int = 3, height: int = 2) -> bytes:
    out = io.BytesIO()
    Image.new("L", (width, height), 255).save(out, format="PNG")
    return out.getvalue()


def completed_job(output: dict[str, Any], endpoint_id: str = "fal-ai/evf-sam") -> uuid.UUID:
    """A job completed with `output`, as a webhook would complete it."""
    with transaction() as s:
        job, _ = create_job(s, endpoint_id, {"prompt": "cat"})
        job.status = "in_progress"
        job_id = job.id
    with transaction() as s:
        locked = lock_job(s, job_id)
        assert locked is not None and complete(s, locked, output, EventSource.WEBHOOK)
    return job_id


def records(job_id: uuid.UUID) -> list[StoredFile]:
    with transaction() as s:
        rows = list(
            s.scalars(select(StoredFile).where(StoredFile.job_id == job_id).order_by(StoredFile.path))
        )
        s.expunge_all()
        return rows


def files_stored_events(job_id: uuid.UUID) -> list[JobEvent]:
    with transaction() as s:
        rows = list(s.scalars(select(JobEvent).where(JobEvent.job_id == job_id, JobEvent.source == "store")))
        s.expunge_all()
        return rows


def count_records(job_id: uuid.UUID) -> int:
    with transaction() as s:
        return int(
            s.scalar(select(func.count()).select_from(StoredFile).where(StoredFile.job_id == job_id)) or 0
        )


def detail(job_id: uuid.UUID) -> dict[str, Any]:
    with snapshot() as s:
        job = get_job(s, job_id, full=True)
        assert job is not None
        return job_detail(job)
