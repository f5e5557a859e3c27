"""The Celery application.

Delivery guarantees we rely on (docs/reliability.md):
- acks_late + reject_on_worker_lost: a task is removed from Redis only after it finished,
  so a worker killed mid-task leaves it to be redelivered; every task is safe to run twice.
- prefetch 1: a worker holds no queue of unacknowledged tasks another worker could run.
- The broker is resolved lazily so that commands that never enqueue (jobs list, show) do
  not start the embedded Redis.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from celery import Celery, Task
from celery.signals import after_setup_logger, after_setup_task_logger, worker_init, worker_process_init

from falbridge import config, logs
from falbridge.models.db import dispose_all
from falbridge.worker import broker, metrics, outage_log

log = logging.getLogger(__name__)
# A failed enqueue is logged once per window, whatever process (receiver, worker) it is in.
log.addFilter(outage_log.BrokerOutageFilter())

DEFAULT_PRIORITY = 6
URGENT_PRIORITY = 0
URGENT_TASKS = ("falbridge.reconcile", "falbridge.poll_job", "falbridge.fetch_result")
celery_app = Celery("falbridge", include=["falbridge.worker.tasks", "falbridge.worker.scheduled"])
celery_app.conf.update(
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_ignore_result=True,
    task_serializer="json",
    accept_content=["json"],
    task_default_queue="falbridge",
    # Redis serves a queue's lower priority steps first (kombu: 0, 3, 6, 9). Everything
    # waits at DEFAULT_PRIORITY but the sweep and the fal reads it starts (URGENT_PRIORITY):
    # a result whose callback was dropped is lost once fal's window passes (six minutes
    # for 10 KB or more), and a backlog of submits and outgoing webhooks must not eat it.
    task_default_priority=DEFAULT_PRIORITY,
    task_routes={name: {"priority": URGENT_PRIORITY} for name in URGENT_TASKS},
    broker_connection_retry_on_startup=True,
    # Publishing must fail fast when Redis is down: the caller leaves the row for the
    # sweeper rather than blocking an HTTP request.
    task_publish_retry_policy={"max_retries": 2, "interval_start": 0, "interval_step": 0.2},
    broker_connection_timeout=3,
    worker_hijack_root_logger=False,
    # On a lost broker connection, cancel tasks in flight: they are redelivered (acks_late),
    # and each is safe to run twice. (Also Celery 6's default, and it silences a warning.)
    worker_cancel_long_running_tasks_on_connection_loss=True,
)


def _from_config() -> dict[str, Any]:
    # A promise: read when Celery first needs its configuration, so `celery -A
    # falbridge.worker.celery_app ...` works with REDIS_URL set and without our CLI.
    cfg = config.current()
    settings: dict[str, Any] = {
        "broker_transport_options": {"visibility_timeout": cfg.broker.visibility_timeout_s},
        # The sweeper (falbridge.worker.sweep), run by `falbridge beat`.
        "beat_schedule": {
            "sweep": {
                "task": "falbridge.reconcile",
                "schedule": cfg.sweep.interval_s,
                "options": {"priority": URGENT_PRIORITY},
            }
        },
    }
    if cfg.purge.older_than:  # retention is the operator's choice: off by default
        settings["beat_schedule"]["purge"] = {"task": "falbridge.purge", "schedule": cfg.purge.interval_s}
    if cfg.broker.redis_url:
        settings["broker_url"] = cfg.broker.redis_url
    if cfg.observability.task_events:  # for Flower and `celery events`: off unless asked
        settings["worker_send_task_events"] = True
        settings["task_send_sent_event"] = True
    return settings


celery_app.add_defaults(_from_config)

_configured = False
_configure_lock = threading.Lock()


def ensure_broker() -> Celery:
    """The app with its broker resolved: REDIS_URL, else the embedded Redis (started now)."""
    global _configured
    with _configure_lock:
        if not _configured:
            cfg = config.current()
            if cfg.broker.redis_url:
                celery_app.conf.broker_url = cfg.broker.redis_url
            else:
                celery_app.conf.broker_url = broker.embedded_url(cfg.database.resolved_var_dir())
            _configured = True
    return celery_app


@after_setup_logger.connect
def _one_line_per_outage(logger: logging.Logger, **_: object) -> None:
    outage_log.install(logger)
    logs.quiet_http_clients()
    logs.use_format(logger, config.current().observability.log_format)


@after_setup_task_logger.connect
def _task_lines_formatted(logger: logging.Logger, **_: object) -> None:
    logs.use_format(logger, config.current().observability.log_format)


@worker_init.connect
def _serve_metrics(**_: object) -> None:
    # In the worker's main process, before a prefork pool forks its children: they write
    # their files to the directory this process empties now and serves.
    metrics.setup("worker", fresh=True)
    metrics.serve_worker_port()


@worker_process_init.connect
def _fresh_connections_after_fork(**_: object) -> None:
    # Pooled DB connections must not be shared with the parent (the fal client rebuilds
    # itself when it sees a new pid).
    dispose_all()


def enqueue(task: Task, *args: object, countdown: float | None = None) -> bool:
    """Publish a task (after `countdown` seconds: short ones only, well within the
    visibility timeout); False (logged) when the broker is unreachable.

    Callers only enqueue after committing the rows a task needs, so a failed publish
    loses nothing: the sweeper finds the row and re-drives it.
    """
    ensure_broker()
    try:
        task.apply_async(args=args, retry=True, countdown=countdown)
        return True
    except Exception as exc:  # kombu raises a zoo of connection errors
        log.warning("could not enqueue %s%r: %s; the sweeper will pick it up", task.name, args, exc)
        return False
