"""Watching one job live: fal's status with its logs, asked only when someone waits on it.

The sweeper polls only jobs whose callback is overdue; a caller waiting on a job (the
`falbridge submit --wait` progress, `GET /api/jobs/<id>/live`) asks fal here instead, once
per request, so only watched jobs cost fal calls. What the answer proves is recorded: a job
fal runs moves to in_progress. Its outcome still arrives as every outcome does (callback,
or the sweeper's poll), so a watch never applies a result twice.
"""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any

from falbridge.models.db import transaction
from falbridge.models.jobs import get_job, lock_job, transition
from falbridge.models.states import EventSource, JobStatus
from falbridge.worker.fal import FalError, get_client
from falbridge.worker.queue_ref import request_ref


@dataclasses.dataclass(frozen=True)
class FalReading:
    """What fal said just now. `status` is fal's own (IN_QUEUE, IN_PROGRESS, COMPLETED),
    None when fal was not asked: the job is finished or not yet at fal, or fal did not answer
    (`unavailable` says why)."""

    status: str | None = None
    queue_position: int | None = None
    logs: tuple[dict[str, Any], ...] = ()
    unavailable: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "queue_position": self.queue_position,
            "logs": [_log_line(entry) for entry in self.logs],
            "unavailable": self.unavailable,
        }


def watch(job_id: uuid.UUID) -> FalReading:
    """Ask fal for the job's status with logs, if it is at fal and not finished."""
    with transaction() as s:
        job = get_job(s, job_id)
        if job is None or job.request_id is None or job.job_status.is_terminal:
            return FalReading()
        ref = request_ref(job)
    try:
        status = get_client().status(ref, with_logs=True)
    except FalError as exc:
        # A watcher sees the job as stored and why fal's part is missing; it asks again.
        return FalReading(unavailable=f"fal did not answer: {type(exc).__name__}")
    if status.status == "IN_PROGRESS":
        with transaction() as s:
            locked = lock_job(s, job_id)
            if locked is not None:
                transition(s, locked, JobStatus.IN_PROGRESS, EventSource.POLL)
    return FalReading(status.status, status.queue_position, status.logs or ())


def _log_line(entry: dict[str, Any]) -> dict[str, Any]:
    # fal's entries: {message, timestamp} and, in some versions, level and source.
    return {
        "message": str(entry.get("message", "")),
        "timestamp": entry.get("timestamp") if isinstance(entry.get("timestamp"), str) else None,
        "level": entry.get("level") if isinstance(entry.get("level"), str) else None,
    }
