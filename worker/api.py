"""The Python API: `falbridge.submit(...)` and friends. The HTTP API and the CLI call these."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from falbridge.models.db import transaction
from falbridge.models.jobs import create_job, get_job
from falbridge.models.states import EventSource
from falbridge.models.tables import Job
from falbridge.worker.celery_app import enqueue
from falbridge.worker.datauri import inline_local_files
from falbridge.worker.fal import validate_input
from falbridge.worker.fal.endpoints import validate_endpoint_id


class ExternalIdConflict(ValueError):
    """The external_id already names a job with a different endpoint or input."""

    def __init__(self, job: Job):
        super().__init__(
            f"external_id {job.external_id!r} already names job {job.id} "
            "with a different endpoint_id or input"
        )
        self.job = job


def submit(
    endpoint_id: str,
    input: Mapping[str, Any],
    *,
    external_id: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    source: EventSource = EventSource.API,
) -> tuple[Job, bool]:
    """Validate, store as pending, and enqueue the submit after commit.

    Returns (job, created), the job with its files and events loaded. Re-submitting an external_id returns the existing job and
    enqueues nothing; a different endpoint or input under the same key is an error.
    Raises InputValidationError / ValueError for bad input before anything is stored.
    """
    endpoint_id = validate_endpoint_id(endpoint_id)
    payload = validate_input(endpoint_id, inline_local_files(dict(input)))
    with transaction() as s:
        job, created = create_job(
            s,
            endpoint_id,
            payload,
            external_id=external_id,
            metadata=dict(metadata) if metadata is not None else None,
            source=source,
        )
    if not created:
        if job.endpoint_id != endpoint_id or job.input != payload:
            raise ExternalIdConflict(job)
        return job, False
    from falbridge.worker.tasks import submit_job

    enqueue(submit_job, str(job.id))  # if Redis is down the job waits, pending, for the sweeper
    return job, True


def cancel(job_id: uuid.UUID | str) -> tuple[Job | None, str]:
    from falbridge.worker.queue_ops import request_cancel
    from falbridge.worker.tasks import cancel_job

    outcome, ask_fal = request_cancel(job_id)
    if ask_fal:
        enqueue(cancel_job, str(job_id))
    return get(job_id), outcome


def get(job_id: uuid.UUID | str, *, full: bool = False) -> Job | None:
    with transaction() as s:
        return get_job(s, job_id, full=full)
