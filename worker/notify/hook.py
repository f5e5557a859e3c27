"""A job's `on_complete` hook: its terminal event handed to the user's own Celery task.

The task (by name, on the queue the user named, Celery's default `celery` otherwise) is
sent `(job_id, event_id)`: the event id is the webhook-id subscribers see, stable across
retries, so the task can deduplicate. At least once, like every delivery of the outbox:
a worker killed between sending and recording sends it again.
"""

from __future__ import annotations

import time

from falbridge.models.event_deliveries import AttemptResult
from falbridge.worker.celery_app import celery_app, ensure_broker

DEFAULT_QUEUE = "celery"


def send(task_name: str, queue: str | None, job_id: str, event_id: str) -> AttemptResult:
    """Publish the task; every failure is an AttemptResult (retried on the schedule)."""
    started = time.perf_counter()
    target = queue or DEFAULT_QUEUE
    try:
        ensure_broker()
        celery_app.send_task(task_name, args=[job_id, event_id], queue=target, retry=True)
    except Exception as exc:  # kombu raises a zoo of connection errors
        return AttemptResult(None, _ms(started), error=f"{type(exc).__name__}: {exc}"[:1000])
    return AttemptResult(None, _ms(started), response_head=f"sent {task_name} to queue {target}", queued=True)


def _ms(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)
