"""Pipeline: CPU per unit of work and jobs per second from `POST /api/jobs` to a job ended,
its result file stored and its events delivered, through the sandbox at zero model
latency, against a Celery no-op task round trip on the same broker and worker settings.

    python bench/pipeline.py [--jobs 20000] [--concurrency 4] [--connections 16]

Processes, each its own: PostgreSQL, redis-server, the sandbox as fal (`python -m falbridge.sandbox
--latency 0`), the receiver and, apart, the jobs API (two `falbridge serve`), a worker (`falbridge worker
--concurrency N`, prefork), a subscriber (bench/chaos_subscriber.py without faults) and
wrk posting the jobs with a bearer token, each job once, over keep-alive connections.
The features of the earlier issues are on: result files are stored (a directory of the
run), and one subscription, made through the API, gets each job's terminal and
files-stored events (bench/pipeline_units.py). Every job goes API -> submit -> sandbox
(fal-ai/evf-sam draws a mask) -> signed callback -> receiver -> applied -> completed ->
its mask fetched from the sandbox and stored -> two events delivered. The clock and the
CPU accounting stop when the database says all of that is done; throughput is jobs /
(the last completed_at, stored_at or delivered_at - the first created_at).

CPU is counted per unit of work, so the sandbox (which shares the cores) does not blur
falbridge's own cost; the targets (issue 17) are falbridge's processes (receiver, API
and workers) <= 7 ms per job, the receiver <= 2 ms per verified callback (counted from
the database; the POSTs go to the API's own process, so the receiver's CPU is its
callbacks'), PostgreSQL <= 2 ms per job. The sandbox, the subscriber and Redis are
printed apart. The baseline of the rate is a worker
started the same way (same Celery app and settings, same pool and concurrency) draining
no-op tasks published from this process: from the moment it may consume to the last
acknowledgement. The tasks are queued first, with the worker told not to consume, so the
publisher's speed is not what is measured.

Prints one line; PASS when every per-unit CPU target is met and every job, file and
event is accounted for (the rates are printed beside them, not judged):
    pipeline: jobs=…/s … cpu_ms: falbridge/job=… receiver/callback=… postgres/job=… … PASS|FAIL (missed: …)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
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
    set_consuming,
    wait_quiet,
    write_requests,
)
from bench.pipeline_units import (
    ENDPOINT,
    EVENTS,
    JOB_INPUT,
    all_done,
    counts,
    per_unit,
    start_subscriber,
    storage_env,
    unaccounted,
)
from falbridge import config
from falbridge.models.db import get_engine
from falbridge.worker.celery_app import celery_app

STRETCH_RATE = 250.0  # jobs/s end to end, the sandbox included: printed, not judged


def job_requests(tag: str, count: int):
    headers = {"Content-Type": "application/json", **API_HEADERS}
    for i in range(count):
        body = json.dumps(
            {
                "endpoint_id": ENDPOINT,
                "input": {"prompt": f"bench {i}", **JOB_INPUT},
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
    events: tuple[str, ...] = EVENTS,
) -> tuple[str, bool]:
    noop_tasks = noop_tasks or min(jobs, 10000)
    quiet = wait_quiet(wait_quiet_s)
    watch = QuietWatch()
    run_dir = run_dir_for("pipeline")
    stack = BenchStack(run_dir)
    try:
        stack.start_services()
        stack.set_env(storage_env(run_dir))
        sandbox = stack.start_sandbox(
            latency_s=0.0, concurrency=64, retention_s=3600, seed=1, fal_key=FAKE_FAL_KEY
        )
        receiver = stack.start_receiver()
        api, api_url = stack.start_api()  # wrk's POSTs there: the receiver only takes callbacks
        subscriber, made = start_subscriber(stack, events)
        log(f"pipeline: storing result files in {run_dir / 'files'}; subscribed to {', '.join(events)}")

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
        run_wrk(api_url, warm_file, connections=connections)
        _wait_done(stack, "bench-warm-%", warmup, events, timeout_s=120)

        log(f"pipeline: posting {jobs} jobs over {connections} connections")
        cpu0 = stack.cpu()
        profiler = Profiler(run_dir, [receiver, api, worker, sandbox, subscriber])
        try:
            posted = run_wrk(api_url, main_file, connections=connections, cap_s=900)
            log(
                f"pipeline: API took all {posted.sent} in {posted.seconds:.1f}s ({posted.rate:.0f}/s, "
                f"p99 {posted.p99_ms:.0f}ms); waiting for every job, file and event"
            )
            # Storing files and delivering events took ~0.25 s a job on a loaded machine.
            stats, timeline = _wait_done(stack, "bench-main-%", jobs, events, timeout_s=max(900.0, jobs / 4))
        finally:
            profiler.stop()
        cpu1 = stack.cpu()

        units = per_unit(cpu0, cpu1, stats, jobs)
        log(f"pipeline: CPU ms per job, by process: {cpu_delta(cpu0, cpu1, jobs)}")
        elapsed = stats["elapsed_s"] or 0.0
        rate = stats["terminal"] / elapsed if elapsed else 0.0
        ratio = rate / noop_rate if noop_rate else 0.0
        problems = unaccounted(posted, stats, jobs, events)
        missed = units.missed()
        ok = not problems and not missed
        details = {
            "jobs": jobs,
            "concurrency": concurrency,
            "connections": connections,
            "machine": quiet,
            "noop_per_s": noop_rate,
            "noop_published_per_s": publish_rate,
            "jobs_per_s": rate,
            "ratio": ratio,
            "api": posted.__dict__,
            "database": stats,
            "subscription": {"events": list(events), "made_by": made["made_by"]},
            "cpu_ms_per_unit": units.__dict__,
            "cpu_ms_per_job": cpu_delta(cpu0, cpu1, jobs),
            "targets_missed": missed,
            "timeline": timeline,
            "problems": problems,
        }
        (run_dir / "pipeline.json").write_text(json.dumps(details, indent=2, default=str))
        for problem in problems:
            log(f"pipeline: PROBLEM: {problem}")
        log(f"pipeline: details in {run_dir}")
        verdict = "PASS" if ok else "FAIL" + (f" (missed: {' '.join(missed)})" if missed else "")
        line = (
            f"pipeline: jobs={rate:.0f}/s ({stats['terminal']} in {elapsed:.1f}s, {pool} worker, "
            f"concurrency {concurrency}) noop={noop_rate:.0f}/s ratio={ratio:.2f} stretch>=250/s "
            f"completed={stats['completed']}/{jobs} files={stats['files_stored']}/{stats['result_files']} "
            f"events={stats['events_delivered']}/{stats['events']} callbacks={stats['callbacks_verified']} "
            f"{units.summary()} {verdict}"
        )
        return finish_line(line, quiet, watch), ok
    finally:
        stack.stop()


def _drain_noops(stack: BenchStack, count: int) -> tuple[float, float]:
    """Queue `count` no-op tasks while the worker is told not to consume, then let it
    consume and wait until it has acknowledged every one (queue empty, nothing
    unacknowledged). Publishing from one Python process is about as slow as the worker,
    so it is kept out of the clock. Returns (tasks per second, publishes per second)."""

    # Imported here: importing it resolves the broker from REDIS_URL, which must be this
    # stack's Redis (unset, it would start the embedded one under ./var and leave it running).
    os.environ["REDIS_URL"] = stack.redis_url
    config.use(None)
    from bench.noop_task import noop

    celery_app.conf.broker_url = stack.redis_url
    client = redis.Redis.from_url(stack.redis_url)
    try:
        set_consuming(celery_app, "falbridge", on=False, who="the no-op worker")
        with celery_app.producer_or_acquire() as producer:
            t0 = time.monotonic()
            for _ in range(count):
                noop.apply_async(producer=producer)
            publish_s = time.monotonic() - t0
        t1 = time.monotonic()
        set_consuming(celery_app, "falbridge", on=True, who="the no-op worker")
        while _queued(client) or client.hlen("unacked"):
            time.sleep(0.005)
        t2 = time.monotonic()
    finally:
        client.close()
    return count / (t2 - t1), count / max(publish_s, 1e-9)


def _queued(client: redis.Redis) -> int:
    """Messages waiting in the queue: kombu keeps one Redis list per priority step
    (`falbridge`, then `falbridge\x06\x163`, ...), and our tasks wait at priority 6, so the
    bare `falbridge` list alone is empty from the start."""
    keys = [key for key in client.scan_iter(match="falbridge*") if client.type(key) == b"list"]
    return sum(int(client.llen(key)) for key in keys)


def _terminal(stack: BenchStack, pattern: str) -> int:
    """Jobs ended: the cheap question asked while they run (PostgreSQL's CPU is measured)."""
    with get_engine(stack.database_url).connect() as conn:
        return int(
            conn.execute(
                text(
                    "SELECT count(*) FROM jobs WHERE external_id LIKE :pattern"
                    " AND status IN ('completed', 'failed', 'cancelled')"
                ),
                {"pattern": pattern},
            ).scalar_one()
        )


def _wait_done(
    stack: BenchStack, pattern: str, expected: int, events: tuple[str, ...], timeout_s: float
) -> tuple[dict, list[tuple[float, int]]]:
    """Once a second until every job has ended, then until its files are recorded and its
    events delivered (bench/pipeline_units.all_done), or `timeout_s`. Returns the final
    counts and the timeline of jobs ended."""
    t0 = time.monotonic()
    timeline: list[tuple[float, int]] = []
    while True:
        now = time.monotonic()
        ended = _terminal(stack, pattern)
        timeline.append((round(now - t0, 1), ended))
        if ended >= expected or now - t0 > timeout_s:
            c = counts(stack.database_url, pattern)
            if all_done(c, expected, events) or now - t0 > timeout_s:
                return c, timeline
        time.sleep(1.0)  # polling: what ends the wait is the database's answer above


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
    parser.add_argument(
        "--events",
        default=",".join(EVENTS),
        help="the event types the one subscription lists (job.status_changed: every transition)",
    )
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
            events=tuple(e.strip() for e in args.events.split(",") if e.strip()),
        ),
    )


if __name__ == "__main__":
    sys.exit(main())
