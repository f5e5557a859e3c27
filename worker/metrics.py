"""falbridge's Prometheus metrics: every definition, and the registry a scrape reads.

prometheus_client runs in multiprocess mode: each process writes its values to files in
its role's directory (FALBRIDGE_METRICS_DIR/web or /worker), and a scrape adds up every
file there, so gunicorn's processes and a prefork worker's children count as one. The
counts that are state rather than events (jobs by status, the inbox's and the outbox's
backlogs) are read from the database at scrape time (worker.metrics_db), so any scrape
of any process sees them. Labels are bounded: statuses, outcomes and reasons are closed
sets, and endpoints outside FALBRIDGE_METRICS_ENDPOINTS are counted as "other".
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
    start_http_server,
    values,
)

from falbridge import config

log = logging.getLogger(__name__)

# Seconds: a submit is a few hundred milliseconds, a retried one up to a minute.
_CALL_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
# Seconds from creation to a terminal status: seconds for the sandbox, minutes for real
# models, hours when fal's queue is long.
_JOB_BUCKETS = (1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 4 * 3600, 24 * 3600)
_VERIFY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1)


@dataclass
class Metrics:
    jobs_submitted: Counter = field(
        default_factory=lambda: Counter(
            "falbridge_jobs_submitted",
            "Jobs fal accepted (counted when a job first shows a fal request id)",
            ["endpoint"],
            registry=None,
        )
    )
    jobs_terminal: Counter = field(
        default_factory=lambda: Counter(
            "falbridge_jobs_terminal",
            "Jobs that reached a terminal status",
            ["endpoint", "status"],
            registry=None,
        )
    )
    job_duration: Histogram = field(
        default_factory=lambda: Histogram(
            "falbridge_job_duration_seconds",
            "From a job's creation to its terminal status",
            ["endpoint", "status"],
            buckets=_JOB_BUCKETS,
            registry=None,
        )
    )
    submit_duration: Histogram = field(
        default_factory=lambda: Histogram(
            "falbridge_fal_submit_duration_seconds",
            "One submit call to fal's queue, answered or failed",
            ["endpoint"],
            buckets=_CALL_BUCKETS,
            registry=None,
        )
    )
    fal_errors: Counter = field(
        default_factory=lambda: Counter(
            "falbridge_fal_errors",
            "Failed calls to fal by class (retryable, outcome_unknown, final, invalid_input, other)",
            ["operation", "error_class"],
            registry=None,
        )
    )
    webhook_deliveries: Counter = field(
        default_factory=lambda: Counter(
            "falbridge_webhook_deliveries",
            "fal callbacks received, by outcome (stored, duplicate, rejected, unavailable)",
            ["outcome"],
            registry=None,
        )
    )
    webhook_rejections: Counter = field(
        default_factory=lambda: Counter(
            "falbridge_webhook_rejections", "Rejected fal callbacks by reason", ["reason"], registry=None
        )
    )
    verify_duration: Histogram = field(
        default_factory=lambda: Histogram(
            "falbridge_webhook_verification_duration_seconds",
            "Verifying one callback's signature (JWKS from cache or fetched)",
            buckets=_VERIFY_BUCKETS,
            registry=None,
        )
    )
    outgoing_attempts: Counter = field(
        default_factory=lambda: Counter(
            "falbridge_outgoing_delivery_attempts",
            "Attempts to deliver an outgoing event, by result (delivered, retrying, exhausted)",
            ["result"],
            registry=None,
        )
    )
    sweeper_actions: Counter = field(
        default_factory=lambda: Counter(
            "falbridge_sweeper_actions",
            "Work the sweeper found and started, by kind",
            ["kind"],
            registry=None,
        )
    )
    stored_files: Counter = field(
        default_factory=lambda: Counter(
            "falbridge_stored_files", "Result files stored or recorded missing", ["result"], registry=None
        )
    )
    stored_bytes: Counter = field(
        default_factory=lambda: Counter(
            "falbridge_stored_file_bytes", "Bytes of result files written to storage", registry=None
        )
    )
    storage_failures: Counter = field(
        default_factory=lambda: Counter(
            "falbridge_file_storage_failures",
            "Failed attempts to store a result file (retried, or final: recorded missing)",
            ["final"],
            registry=None,
        )
    )


_lock = threading.Lock()
_metrics: Metrics | None = None
_directory: Path | None = None


def setup(role: str, *, fresh: bool = False) -> Metrics | None:
    """This process's metrics, writing under FALBRIDGE_METRICS_DIR/`role`; None when
    FALBRIDGE_METRICS=off. The first call decides (a later role is ignored); `fresh`
    empties the directory first: the process that starts a role's processes (gunicorn's
    master, the Celery worker's main process) calls it before they fork."""
    global _metrics, _directory
    cfg = config.current()
    if cfg.observability.metrics == "off":
        return None
    with _lock:
        if _metrics is None:
            directory = cfg.observability.resolved_metrics_dir(cfg.database.resolved_var_dir(), role)
            directory.mkdir(parents=True, exist_ok=True)
            if fresh:
                for stale in directory.glob("*.db"):
                    stale.unlink(missing_ok=True)
            # prometheus_client picks its value class when imported and reads this
            # variable when each file is opened: both must say multiprocess, here.
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)
            values.ValueClass = values.MultiProcessValue()  # type: ignore[no-untyped-call]
            _directory = directory
            _metrics = Metrics()
        return _metrics


def get() -> Metrics | None:
    """The metrics to count on (set up as a worker's if nothing set them up yet)."""
    return _metrics if _metrics is not None else setup("worker")


_scrape: CollectorRegistry | None = None
_served_port: int | None = None


def scrape_registry() -> CollectorRegistry:
    """What a scrape reads: every process's files of this role (read at each scrape), and
    the database's counts."""
    global _scrape
    from falbridge.worker.metrics_db import DatabaseCollector

    get()
    with _lock:
        if _scrape is None:
            registry = CollectorRegistry()
            if _directory is not None:
                multiprocess.MultiProcessCollector(registry, path=str(_directory))  # type: ignore[no-untyped-call]
            registry.register(DatabaseCollector())
            _scrape = registry
        return _scrape


def exposition() -> tuple[bytes, str]:
    return generate_latest(scrape_registry()), CONTENT_TYPE_LATEST


def serve_worker_port() -> int | None:
    """The Celery worker's own /metrics, on FALBRIDGE_WORKER_METRICS_PORT (web and worker
    run in separate containers in production); once per process. The port it serves."""
    global _served_port
    port = config.current().observability.worker_metrics_port
    if get() is None or not port or _served_port is not None:
        return _served_port
    try:
        start_http_server(port, registry=scrape_registry())
    except OSError as exc:  # the worker still works; only its metrics are missing
        log.error("worker metrics: cannot listen on port %d: %s", port, exc)
        return None
    _served_port = port
    log.info("worker metrics on port %d (/metrics)", port)
    return port


def endpoint(endpoint_id: str) -> str:
    return config.current().observability.endpoint_label(endpoint_id)


_ERROR_CLASSES = {
    "RetryableError": "retryable",
    "OutcomeUnknownError": "outcome_unknown",
    "FinalError": "final",
    "InputValidationError": "invalid_input",
}


@contextmanager
def fal_submit(endpoint_id: str) -> Iterator[None]:
    """Time one submit call to fal and count its failure by class."""
    started = time.perf_counter()
    metrics = get()
    try:
        yield
    except Exception as exc:
        if metrics is not None:
            error_class = next(
                (_ERROR_CLASSES[c.__name__] for c in type(exc).__mro__ if c.__name__ in _ERROR_CLASSES),
                "other",
            )
            metrics.fal_errors.labels("submit", error_class).inc()
        raise
    finally:
        if metrics is not None:
            metrics.submit_duration.labels(endpoint(endpoint_id)).observe(time.perf_counter() - started)


@contextmanager
def verification() -> Iterator[None]:
    started = time.perf_counter()
    try:
        yield
    finally:
        metrics = get()
        if metrics is not None:
            metrics.verify_duration.observe(time.perf_counter() - started)


def webhook(outcome: str, reason: str | None = None) -> None:
    metrics = get()
    if metrics is not None:
        metrics.webhook_deliveries.labels(outcome).inc()
        if reason is not None:
            metrics.webhook_rejections.labels(reason).inc()
