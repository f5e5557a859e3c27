"""The pipeline benchmark's units of work (bench/pipeline.py): the features a job pays for
(its result file stored, its events delivered to one subscription), what the database
says was done, and CPU per unit against the issue's targets.

Counted per unit, not per wall second, so that the sandbox standing in for fal (which
shares the two cores) does not blur falbridge's own cost: falbridge's processes (receiver,
API and workers) per job, the receiver per verified callback, PostgreSQL per job; the
sandbox, the subscriber and Redis are printed apart and count toward no target.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import text

from bench.chaos_load import PNG_URI
from bench.chaos_subscriber import subscribe
from bench.common import API_TOKEN, BenchStack, WrkResult, free_port, wait_http
from falbridge.devstack.processes import ProcessGroup
from falbridge.models.db import get_engine

# A first-class endpoint whose output is a File (the sandbox draws a mask for the tiny PNG
# and serves it): every completed job has one result file for falbridge to store.
ENDPOINT = "fal-ai/evf-sam"
JOB_INPUT = {"image_url": PNG_URI}
# What a user collecting results subscribes to: the terminal events and the files' event.
EVENTS = ("job.completed", "job.failed", "job.cancelled", "job.files_stored")

# The targets, CPU milliseconds per unit of work.
TARGETS_MS = {"falbridge_per_job": 7.0, "receiver_per_callback": 2.0, "postgres_per_job": 2.0}


def storage_env(run_dir: Path) -> dict[str, str]:
    """Every result file stored, in a directory of the run; subscribers on loopback allowed."""
    return {
        "FALBRIDGE_STORE_FILES": "all",
        "FALBRIDGE_STORAGE_URL": f"file://{run_dir / 'files'}",
        "FALBRIDGE_NOTIFY_ALLOWED_NETWORKS": "127.0.0.0/8",
    }


def start_subscriber(stack: BenchStack, events: tuple[str, ...]) -> tuple[ProcessGroup, dict[str, Any]]:
    """One subscription, made through the receiver's API, to a subscriber in its own
    process (bench/chaos_subscriber.py without faults: checks each signature, answers 204)."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    made = subscribe(
        stack.env,
        f"{base}/hooks/falbridge",
        list(events),
        description="pipeline bench",
        api_url=stack.receiver_url,
        api_token=API_TOKEN,
    )
    script = str(Path(__file__).with_name("chaos_subscriber.py"))
    proc = stack.spawn(
        "subscriber", [sys.executable, script, "--port", str(port), "--secret", made["secret"]]
    )
    wait_http(f"{base}/_stats", proc)
    return proc, made


_COUNTS = text("""
    WITH j AS (
        SELECT id, status, request_id, created_at, completed_at FROM jobs WHERE external_id LIKE :pattern
    ),
    d AS (
        SELECT d.status, d.delivered_at FROM event_deliveries d
        JOIN job_events e ON e.id = d.event_id JOIN j ON j.id = e.job_id
    ),
    s AS (SELECT s.status, s.stored_at FROM stored_files s JOIN j ON j.id = s.job_id)
    SELECT
        (SELECT count(*) FROM j) AS total,
        (SELECT count(*) FROM j WHERE status IN ('completed', 'failed', 'cancelled')) AS terminal,
        (SELECT count(*) FROM j WHERE status = 'completed') AS completed,
        (SELECT count(*) + coalesce(sum(redeliveries), 0) FROM webhook_deliveries
          WHERE verified AND request_id IN (SELECT request_id FROM j)) AS callbacks_verified,
        (SELECT count(*) FROM result_files r JOIN j ON j.id = r.job_id) AS result_files,
        (SELECT count(*) FROM s) AS files_recorded,
        (SELECT count(*) FROM s WHERE status = 'stored') AS files_stored,
        (SELECT count(*) FROM d) AS events,
        (SELECT count(*) FROM d WHERE status = 'delivered') AS events_delivered,
        extract(epoch FROM greatest(
            (SELECT max(completed_at) FROM j), (SELECT max(stored_at) FROM s),
            (SELECT max(delivered_at) FROM d)
        ) - (SELECT min(created_at) FROM j)) AS elapsed_s
""")


def counts(database_url: str, pattern: str) -> dict[str, Any]:
    """What the database says was done for the jobs whose external id matches `pattern`;
    `elapsed_s` runs from the first job created to the last job ended, file recorded or
    event delivered."""
    with get_engine(database_url).connect() as conn:
        row = conn.execute(_COUNTS, {"pattern": pattern}).one()
    return {k: (float(v) if k == "elapsed_s" and v is not None else v) for k, v in row._mapping.items()}


def all_done(c: dict[str, Any], jobs: int, events: tuple[str, ...]) -> bool:
    """Every job ended, every result file recorded, and every event the subscription
    lists written (a completed job's files event included) and delivered."""
    listed = set(events)
    # The earlier transitions' events (job.status_changed) are written before the job ends;
    # what may still be missing once it has ended is its terminal and files events.
    per_completed = bool({"job.completed", "job.status_changed"} & listed) + ("job.files_stored" in listed)
    ended_otherwise = c["terminal"] - c["completed"]
    expected = c["completed"] * per_completed
    expected += ended_otherwise if {"job.failed", "job.cancelled", "job.status_changed"} & listed else 0
    return (
        c["terminal"] >= jobs
        and c["files_recorded"] >= c["result_files"]
        and c["events"] >= expected
        and c["events_delivered"] >= c["events"]
    )


def unaccounted(posted: WrkResult, stats: dict[str, Any], jobs: int, events: tuple[str, ...]) -> list[str]:
    """What the run did not do: a job not taken or not completed, a file not stored, an
    event not delivered (none expected: the sandbox and the subscriber have no faults)."""
    problems = []
    if posted.sent != jobs or posted.non_2xx:
        problems.append(
            f"API answered {posted.sent}/{jobs} ({posted.non_2xx} non-2xx, errors {posted.errors})"
        )
    if stats["completed"] != jobs:
        problems.append(f"{stats['completed']}/{jobs} completed")
    if stats["files_stored"] != stats["result_files"] or stats["result_files"] < stats["completed"]:
        problems.append(
            f"{stats['files_stored']} files stored of {stats['result_files']} (a file per job expected)"
        )
    if not all_done(stats, jobs, events):
        problems.append(f"{stats['events_delivered']}/{stats['events']} events delivered when the wait ended")
    return problems


@dataclass
class PerUnit:
    """CPU milliseconds per unit of work over the measured phase."""

    falbridge_per_job: float
    receiver_per_callback: float
    postgres_per_job: float
    worker_per_job: float
    receiver_per_job: float
    api_per_job: float
    sandbox_per_job: float
    subscriber_per_event: float
    redis_per_job: float

    def missed(self) -> list[str]:
        """The targets missed, each as `name=value>target`."""
        return [
            f"{name}={getattr(self, name):.2f}>{limit:g}ms"
            for name, limit in TARGETS_MS.items()
            if getattr(self, name) > limit
        ]

    def summary(self) -> str:
        return (
            f"cpu_ms: falbridge/job={self.falbridge_per_job:.1f} (<=7; worker {self.worker_per_job:.1f}"
            f" + receiver {self.receiver_per_job:.1f} + api {self.api_per_job:.1f}) "
            f"receiver/callback={self.receiver_per_callback:.1f} (<=2) "
            f"postgres/job={self.postgres_per_job:.1f} (<=2) apart: sandbox/job={self.sandbox_per_job:.1f} "
            f"subscriber/event={self.subscriber_per_event:.1f} redis/job={self.redis_per_job:.1f}"
        )


def per_unit(before: dict[str, float], after: dict[str, float], c: dict[str, Any], jobs: int) -> PerUnit:
    """From CPU seconds by process (BenchStack.cpu()) before and after the measured phase;
    every process named `worker*` is a worker."""

    def ms(names: list[str], per: int) -> float:
        used = sum(after.get(n, 0.0) - before.get(n, 0.0) for n in names)
        return round(used * 1000 / max(per, 1), 2)

    workers = [name for name in after if name.startswith("worker")]
    return PerUnit(
        falbridge_per_job=ms(["receiver", "api", *workers], jobs),
        receiver_per_callback=ms(["receiver"], c["callbacks_verified"]),
        postgres_per_job=ms(["postgres"], jobs),
        worker_per_job=ms(workers, jobs),
        receiver_per_job=ms(["receiver"], jobs),
        api_per_job=ms(["api"], jobs),
        sandbox_per_job=ms(["sandbox"], jobs),
        subscriber_per_event=ms(["subscriber"], c["events_delivered"]),
        redis_per_job=ms(["redis"], jobs),
    )
