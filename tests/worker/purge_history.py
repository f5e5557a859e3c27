"""A job history for the purge tests: jobs as the flow leaves them, every dependant row
included (events, their outgoing deliveries and attempts, result files, a stored copy in a
real backend, fal's callbacks in the inbox), written straight into the tables with the
times a test chooses."""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from falbridge.models.purge import TABLES
from falbridge.models.tables import (
    Base,
    DeliveryAttempt,
    EventDelivery,
    Job,
    JobEvent,
    ResultFile,
    StoredFile,
    WebhookDelivery,
)
from falbridge.worker.storage.backend import Backend, object_key

EVF = "fal-ai/evf-sam"
MASK = b"\x89PNG\r\n\x1a\n" + b"mask" * 64


def add_job(session: Session, backend: Backend, status: str, finished: datetime) -> Job:
    """One job last changed at `finished`: with a file stored in `backend` when completed,
    two events (each with a delivered callback and its attempt), and two callbacks in
    the inbox, one matched to the job and one only by its request id."""
    job_id = uuid.uuid4()
    request_id = f"req-{job_id.hex[:12]}"
    completed, failed = status == "completed", status == "failed"
    job = Job(
        id=job_id,
        endpoint_id=EVF,
        input={"prompt": "cat", "image_url": "https://v3.fal.media/files/in/cat.png"},
        status=status,
        request_id=request_id,
        result={"image": {"url": f"https://v3.fal.media/files/{request_id}/mask.png"}} if completed else None,
        error="image_url: could not load the image" if failed else None,
        error_type="image_load_error" if failed else None,
        error_detail=[{"loc": ["body", "image_url"], "msg": "could not load"}] if failed else None,
        created_at=finished - timedelta(seconds=5),
        updated_at=finished,
        touched_at=finished,
        completed_at=finished if completed else None,
        event_seq=2,
    )
    session.add(job)
    session.flush()
    for seq, to_status in ((1, "pending"), (2, status)):
        event = JobEvent(job_id=job_id, seq=seq, to_status=to_status, source="webhook", at=finished)
        session.add(event)
        session.flush()
        delivery = EventDelivery(event_id=event.id, target="notify_url", status="delivered", attempts=1)
        session.add(delivery)
        session.flush()
        session.add(DeliveryAttempt(delivery_id=delivery.id, status_code=200, latency_ms=3))
    if completed:
        _add_file(session, backend, job)
    for matched in (job_id, None):
        session.add(
            WebhookDelivery(
                request_id=request_id, job_id=matched, body=b'{"status": "OK"}', headers={}, verified=True
            )
        )
    session.flush()
    return job


def _add_file(session: Session, backend: Backend, job: Job) -> None:
    key = object_key(job.id, "image", "mask.png")
    backend.put(key, [MASK])
    url = f"https://v3.fal.media/files/{job.request_id}/mask.png"
    session.add(
        ResultFile(job_id=job.id, path="image", url=url, content_type="image/png", file_name="mask.png")
    )
    session.add(
        StoredFile(
            job_id=job.id,
            path="image",
            fal_url=url,
            file_name="mask.png",
            status="stored",
            sha256=hashlib.sha256(MASK).hexdigest(),
            size=len(MASK),
            storage_key=key,
        )
    )


def counts(session: Session) -> dict[str, int]:
    """Rows per table the purge touches."""
    tables = {table.name: table for table in Base.metadata.sorted_tables}
    return {name: int(session.scalar(select(func.count()).select_from(tables[name])) or 0) for name in TABLES}


# What one job of `add_job` holds, per table: completed, and failed or cancelled.
PER_COMPLETED = {
    "jobs": 1,
    "job_events": 2,
    "event_deliveries": 2,
    "delivery_attempts": 2,
    "result_files": 1,
    "stored_files": 1,
    "webhook_deliveries": 2,
    "job_inputs": 0,  # input copies: tests/worker/test_purge_inputs.py
    "input_uploads": 0,
}
PER_UNFINISHED_FILE = {**PER_COMPLETED, "result_files": 0, "stored_files": 0}
