"""The Celery application.

Delivery guarantees we rely on (see README, "Crash safety"):
- acks_late + reject_on_worker_lost: a task is removed from Redis only after it finished,
  so a worker killed mid-task leaves it to be redelivered; every task is safe to run twice.
- prefetch 1: a worker holds no queue of unacknowledged tasks another worker could run.
- The broker is resolved lazily so that commands that never enqueue (jobs list, show) do
  not start the embedded Redis.
"""

from __future__ import annotations

import logging
import os

from celery import Celery
from celery.signals import worker_process_init

from falbridge.worker.broker import broker_url

log = logging.getLogger(__name__)

celery_app = Celery("falbridge", include=["falbridge.worker.tasks"])
celery_app.conf.update(
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_ignore_result=True,
    task_serializer="json",
    accept_content=["json"],
    task_default_queue="falbridge",
    broker_connection_retry_on_startup=True,
    # How long Redis waits before handing an unacknowledged task to another worker.
    # Longer than any task runs (the longest is a submit: 65 s of client timeouts).
    broker_transport_options={
        "visibility_timeout": int(os.environ.get("FALBRIDGE_VISIBILITY_TIMEOUT_S", "600")),
    },
    # Publishing must fail fast when Redis is down: the caller leaves the row for the
    # sweeper rather than blocking an HTTP request.
    task_publish_retry_policy={"max_retries": 2, "interval_start": 0, "interval_step": 0.2},
    broker_connection_timeout=3,
    worker_hijack_root_logger=False,
    # The sweeper (worker/reconcile.py): run by `celery beat` in production.
    beat_schedule={
        "reconcile": {
            "task": "falbridge.reconcile",
            "schedule": float(os.environ.get("FALBRIDGE_RECONCILE_INTERVAL_S", "30")),
        },
    },
)

# With REDIS_URL set there is nothing to start, so configure at import: that keeps
# `celery -A falbridge.worker.celery_app beat` (docker-compose) working without our CLI.
if os.environ.get("REDIS_URL"):
    celery_app.conf.broker_url = os.environ["REDIS_URL"]

_configured = False


def ensure_broker() -> Celery:
    global _configured
    if not _configured:
        celery_app.conf.broker_url = broker_url()
        _configured = True
    return celery_app


@worker_process_init.connect
def _fresh_connections_after_fork(**_):
    # Pooled DB connections and the httpx client must not be shared with the parent.
    from falbridge.models.db import dispose_all

    dispose_all()


def enqueue(task, *args) -> bool:
    """Publish a task; False (logged) when the broker is unreachable.

    Callers only enqueue after committing the rows a task needs, so a failed publish
    loses nothing: the sweeper finds the row and re-drives it.
    """
    ensure_broker()
    try:
        task.apply_async(args=args, retry=True)
        return True
    except Exception as exc:  # kombu raises a zoo of connection errors
        log.warning("could not enqueue %s%r: %s; the sweeper will pick it up", task.name, args, exc)
        return False
