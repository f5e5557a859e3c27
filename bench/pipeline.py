"""Pipeline: jobs per second from `POST /api/jobs` to a terminal state, through the sandbox
at zero model latency, against a Celery no-op task round trip on the same broker and
worker settings.

    python bench/pipeline.py [--jobs 20000] [--concurrency 4] [--connections 16]

Processes, each its own: PostgreSQL, redis-server, the sandbox as fal (`python -m falbridge.sandbox
--latency 0`), the receiver + API (`falbridge serve`), a worker (`falbridge worker
--concurrency N`, prefork), and wrk posting the jobs (a pass-through endpoint the sandbox
echoes) with a bearer token, each job once, over keep-alive connections. Every job goes
API -> submit_job task -> sandbox -> signed callback -> receiver -> process_delivery
task -> completed. Throughput is jobs / (last completed_at - first created_at), both from
the database. The baseline is a worker started the same way (same Celery app and
settings, same pool and concurrency) draining no-op tasks published from this process:
from the moment it may consume to the last acknowledgement. The tasks are queued first,
with the worker told not to consume, so the publisher's speed is not what is measured.

Prints one line:
    pipeline: jobs=…/s noop=…/s ratio=… completed=N/N target>=250/s,>=0.5 PASS|FAIL
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path

import redis
from sqlalchemy import text

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    API_HEADERS,
    FAKE_FAL_KEY,
    BenchStack,
    Profiler,
    QuietWatch,
    cpu_delta,
    finish_line,
    log,
    main_wrapper,
    run_dir_for,
    run_wrk,
    wait_quiet,
    write_requests,
)
from falbridge.models.db import get_engine
from falbridge.worker.celery_app import celery_app

TARGET_RATE = 250.0
TARGET_RATIO = 0.5
ENDPOINT = "fal-ai/bench-echo"  # not first-class: passed to fal as-is; the sandbox echoes it
TERMINAL = ("completed", "failed", "cancelled")


def job_requests(tag: str, count: int):
    headers = {"Content-Type": "application/json", **API_HEADERS}
    for i in range(count):
        body = json.dumps(
            {
                "endpoint_id": ENDPOINT,
                "input": {"prompt": f"bench {i}", "seed": i},
                "external_id": f"{tag}-{i}",
            },
            separators=(",", ":"),
        ).encode()
        yield "POST", "/api/jobs", headers, body


def run(
    jobs: int = 20000,
    concurrency: int = 4,
    connections: int = 16,
    warmup: int = 300,
    noop_tasks: int | None = None,
    wait_quiet_s: float = 0.0,
    pool: str = "prefork",
) -> tuple[str, bool]:
    noop_tasks = noop_tasks or min(jobs, 10000)
    quiet = wait_quiet(wait_quiet_s)
    watch = QuietWatch()
    run_dir = run_dir_for("pipeline")
    stack = BenchStack(run_dir)
    try:
        stack.start_services()
        sandbox = stack.start_sandbox(
            latency_s=0.0, concurrency=64, retention_s=3600, seed=1, fal_key=FAKE_FAL_KEY
        )
        receiver = stack.start_receiver()
        receiver_url = stack.receiver_url

        # -- baseline: no-op round trips on the same broker and worker settings ----------
        noop_worker = stack.start_noop_worker(concurrency, pool)
        _drain_noops(stack, 500)  # warm-up: pool children forked, connections open
        log(f"pipeline: {noop_tasks} no-op tasks through a {pool} worker, concurrency {concurrency}")
        noop_rate, publish_rate = _drain_noops(stack, noop_tasks)
        noop_worker.stop()
        log(f"pipeline: no-op {noop_rate:.0f}/s (published at {publish_rate:.0f}/s)")

        # -- the pipeline ---------------------------------------------------------------
        worker = stack.start_worker(concurrency=concurrency, pool=pool)
        warm_file, main_file = run_dir / "warmup.req", run_dir / "jobs.req"
        write_requests(warm_file, job_requests("bench-warm", warmup))
        write_requests(main_file, job_requests("bench-main", jobs))
        run_wrk(receiver_url, warm_file, connections=connections)
        _wait_terminal(stack, "bench-warm-%", warmup, timeout_s=120)

        log(f"pipeline: posting {jobs} jobs over {connections} connections")
        progress = _Progress(stack, "bench-main-%").start()
        cpu0 = stack.cpu()
        profiler = Profiler(run_dir, [receiver, worker, sandbox])
        try:
            posted = run_wrk(receiver_url, main_file, connections=connections, cap_s=900)
            log(
                f"pipeline: API took all {posted.sent} in {posted.seconds:.1f}s ({posted.rate:.0f}/s, "
                f"p99 {posted.p99_ms:.0f}ms); waiting for every job to end"
            )
            stats = _wait_terminal(stack, "bench-main-%", jobs, timeout_s=900)
        finally:
            profiler.stop()
            progress.stop()

        cpu_ms = cpu_delta(cpu0, stack.cpu(), jobs)
        log(f"pipeline: CPU ms per job: {cpu_ms}")
        elapsed = stats["elapsed_s"]
        rate = stats["terminal"] / elapsed if elapsed else 0.0
        ratio = rate / noop_rate if noop_rate else 0.0
        problems = []
        if posted.sent != jobs or posted.non_2xx:
            problems.append(
                f"API answered {posted.sent}/{jobs} ({posted.non_2xx} non-2xx, errors {posted.errors})"
            )
        if stats["completed"] != jobs:
            problems.append(f"{stats['completed']}/{jobs} completed ({stats})")
        ok = rate >= TARGET_RATE and ratio >= TARGET_RATIO and not problems
        details = {
            "jobs": jobs,
            "concurrency": concurrency,
            "connections": connections,
            "machine": quiet,
            "noop_per_s": noop_rate,
            "noop_published_per_s": publish_rate,
            "api": posted.__dict__,
            "database": stats,
            "cpu_ms_per_job": cpu_ms,
            "timeline": progress.samples,
            "problems": problems,
        }
        (run_dir / "pipeline.json").write_text(json.dumps(details, indent=2, default=str))
        for problem in problems:
            log(f"pipeline: PROBLEM: {problem}")
        log(f"pipeline: details in {run_dir}")
        line = (
            f"pipeline: jobs={rate:.0f}/s ({stats['terminal']} in {elapsed:.1f}s, "
            f"{pool} worker, concurrency {concurrency}) noop={noop_rate:.0f}/s ratio={ratio:.2f} "
            f"completed={stats['completed']}/{jobs} target>=250/s,>=0.5 {'PASS' if ok else 'FAIL'}"
        )
        return finish_line(line, quiet, watch), ok
    finally:
        stack.stop()


def _drain_noops(stack: BenchStack, count: int) -> tuple[float, float]:
    """Queue `count` no-op tasks while the worker is told not to consume, then let it
    consume and wait until it has acknowledged every one (queue empty, nothing
    unacknowledged). Publishing from one Python process is about as slow as the worker,
    so it is kept out of the clock. Returns (tasks per second, publishes per second)."""

    # Imported here: importing it resolves the broker, which must be this stack's Redis.
    from bench.noop_task import noop

    celery_app.conf.broker_url = stack.redis_url
    client = redis.Redis.from_url(stack.redis_url)
    try:
        if not celery_app.control.cancel_consumer("falbridge", reply=True, timeout=5):
            raise RuntimeError("the no-op worker did not answer cancel_consumer")
        with celery_app.producer_or_acquire() as producer:
            t0 = time.monotonic()
            for _ in range(count):
                noop.apply_async(producer=producer)
            publish_s = time.monotonic() - t0
        t1 = time.monotonic()
        if not celery_app.control.add_consumer("falbridge", reply=True, timeout=5):
            raise RuntimeError("the no-op worker did not answer add_consumer")
        while client.llen("falbridge") or client.hlen("unacked"):
            time.sleep(0.005)
        t2 = time.monotonic()
    finally:
        client.close()
    return count / (t2 - t1), count / max(publish_s, 1e-9)


class _Progress(threading.Thread):
    """Terminal count every second, for the run's timeline (pipeline.json)."""

    def __init__(self, stack: BenchStack, pattern: str):
        super().__init__(daemon=True)
        self.stack, self.pattern = stack, pattern
        self.samples: list[tuple[float, int]] = []
        self._stop_event = threading.Event()

    def start(self) -> _Progress:
        self.t0 = time.monotonic()
        super().start()
        return self

    def run(self) -> None:
        while not self._stop_event.wait(1.0):
            self.samples.append(
                (round(time.monotonic() - self.t0, 1), _counts(self.stack, self.pattern)["terminal"])
            )

    def stop(self) -> None:
        self._stop_event.set()
        self.join(5)


def _counts(stack: BenchStack, pattern: str) -> dict:

    with get_engine(stack.database_url).connect() as conn:
        row = conn.execute(
            text(
                "SELECT count(*) AS total,"
                " count(*) FILTER (WHERE status IN ('completed','failed','cancelled')) AS terminal,"
                " count(*) FILTER (WHERE status = 'completed') AS completed,"
                " extract(epoch FROM max(completed_at) - min(created_at)) AS elapsed_s,"
                " count(DISTINCT external_id) AS distinct_external_ids"
                " FROM jobs WHERE external_id LIKE :pattern"
            ),
            {"pattern": pattern},
        ).one()
    return {k: (float(v) if k == "elapsed_s" and v is not None else v) for k, v in row._mapping.items()}


def _wait_terminal(stack: BenchStack, pattern: str, expected: int, timeout_s: float, progress=None) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        counts = _counts(stack, pattern)
        if counts["terminal"] >= expected or time.monotonic() > deadline:
            return counts
        time.sleep(0.25)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=20000)
    parser.add_argument("--concurrency", type=int, default=4, help="worker processes or threads")
    parser.add_argument(
        "--pool",
        choices=("prefork", "threads"),
        default="prefork",
        help="the worker's pool, for the pipeline and the baseline alike",
    )
    parser.add_argument("--connections", type=int, default=16, help="wrk connections posting jobs")
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument(
        "--noop-tasks", type=int, default=None, help="baseline size (default: jobs, at most 10,000)"
    )
    parser.add_argument("--wait-quiet", type=float, default=0.0)
    args = parser.parse_args(argv)
    return main_wrapper(
        "pipeline",
        lambda: run(
            args.jobs,
            args.concurrency,
            args.connections,
            args.warmup,
            args.noop_tasks,
            wait_quiet_s=args.wait_quiet,
            pool=args.pool,
        ),
    )


if __name__ == "__main__":
    sys.exit(main())
