"""Ingest: verified fal callbacks per second into one receiver, against a bare endpoint.

    python bench/ingest.py [--deliveries 15000] [--connections 32]

The receiver is `falbridge serve` (gunicorn, its production defaults) on PostgreSQL and a
real redis-server. Jobs are created first (submitted, with fal request ids), then one
callback per job is signed with a sandbox key (the receiver fetches that key from the
sandbox's JWKS) right before the run, so every request is a real verified delivery of
one of our jobs: verify + store + enqueue. wrk (a separate process) replays them, each
once. The baseline is the same gunicorn configuration serving bench/bare_app.py, an
endpoint that reads the body and answers 200, driven by the same wrk and script. The DB
must then hold exactly the deliveries sent, each once, and the queue one task for each.

The cost of metrics, in the same run: after the main measurement, the receiver and a
second one with FALBRIDGE_METRICS=off each get as many callbacks again (of other jobs: a
replay would be duplicates, a cheaper path), in four rounds taken in turn, ABBA BAAB, so
neither is always first or last (one after the other, the same receiver measured 675/s
or 919/s depending on its place); `metrics_ratio` is the rate with metrics over the rate
without, each summed over its rounds (1.00: free; 0.95: metrics cost 5 %).

Prints one line:
    ingest: receiver=…/s p50 p99 no_metrics=…/s metrics_ratio=… bare=…/s p50 p99 ratio=…
    target>=1000/s,>=0.5 PASS|FAIL
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import redis
from sqlalchemy import text

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    BenchStack,
    JwksHost,
    Profiler,
    QuietWatch,
    WrkResult,
    cpu_delta,
    finish_line,
    fmt_ms,
    free_port,
    insert_submitted_jobs,
    log,
    main_wrapper,
    run_dir_for,
    run_wrk,
    signed_callbacks,
    wait_quiet,
    write_requests,
)
from falbridge.models.db import get_engine

TARGET_RATE = 1000.0
TARGET_RATIO = 0.5


def run(
    deliveries: int = 15000, connections: int = 32, warmup: int = 1000, wait_quiet_s: float = 0.0
) -> tuple[str, bool]:
    quiet = wait_quiet(wait_quiet_s)
    watch = QuietWatch()
    run_dir = run_dir_for("ingest")
    stack = BenchStack(run_dir)
    jwks = None
    try:
        stack.start_services()
        jwks = JwksHost()
        receiver_port, bare_port = free_port(), free_port()
        stack.set_env({"FAL_JWKS_URL": jwks.jwks_url, "FAL_WEBHOOK_USER_ID": jwks.user_id})
        receiver = stack.start_receiver(receiver_port)
        plain_port = free_port()
        stack.set_env({"FALBRIDGE_METRICS": "off"})
        plain = stack.start_receiver(plain_port)
        stack.set_env({"FALBRIDGE_METRICS": None})
        bare = stack.start_bare(bare_port)

        per_receiver = warmup + deliveries
        jobs = insert_submitted_jobs(stack.database_url, 2 * per_receiver + deliveries, "bench-ingest")
        log(f"ingest: {len(jobs)} submitted jobs in PostgreSQL; signing callbacks")
        warm_file, main_file = run_dir / "warmup.req", run_dir / "deliveries.req"
        plain_warm = run_dir / "warmup-no-metrics.req"
        write_requests(warm_file, signed_callbacks(jwks.key, jwks.user_id, jobs[:warmup]))
        write_requests(main_file, signed_callbacks(jwks.key, jwks.user_id, jobs[warmup:per_receiver], warmup))
        others = jobs[per_receiver : 2 * per_receiver]
        write_requests(plain_warm, signed_callbacks(jwks.key, jwks.user_id, others[:warmup], per_receiver))
        with_rounds = _round_files(run_dir / "metrics-on", jwks, jobs[2 * per_receiver :], 2 * per_receiver)
        without_rounds = _round_files(run_dir / "metrics-off", jwks, others[warmup:], per_receiver + warmup)

        receiver_url, bare_url = f"http://127.0.0.1:{receiver_port}", f"http://127.0.0.1:{bare_port}"
        plain_url = f"http://127.0.0.1:{plain_port}"
        # Warm-up (not counted): JWKS fetch, pools, imports in every gunicorn worker.
        run_wrk(receiver_url, warm_file, connections=connections)
        run_wrk(plain_url, plain_warm, connections=connections)
        run_wrk(bare_url, warm_file, connections=connections)

        cpu0, stack_cpu0 = receiver.cpu_s(), stack.cpu()
        log(f"ingest: replaying {deliveries} signed callbacks to the receiver")
        profiler = Profiler(run_dir, [receiver])
        try:
            rec = run_wrk(receiver_url, main_file, connections=connections)
        finally:
            profiler.stop()
        receiver_cpu = receiver.cpu_s() - cpu0
        cpu_ms = cpu_delta(stack_cpu0, stack.cpu(), deliveries)
        log(f"ingest: CPU ms per delivery: {cpu_ms}")
        log(f"ingest: receiver {rec.rate:.0f}/s; now with and without metrics, in turn")
        plain_cpu0 = plain.cpu_s()
        with_metrics, without = _in_turn(
            (receiver_url, with_rounds), (plain_url, without_rounds), connections=connections
        )
        plain_cpu = plain.cpu_s() - plain_cpu0
        log(
            f"ingest: with metrics {with_metrics.rate:.0f}/s, without {without.rate:.0f}/s; "
            "now the bare endpoint"
        )
        bare_cpu0 = bare.cpu_s()
        base = run_wrk(bare_url, main_file, connections=connections)
        bare_cpu = bare.cpu_s() - bare_cpu0

        expected = 2 * per_receiver + deliveries
        check = _check_database(stack, expected)
        queued = _queued_tasks(stack)
        problems = []
        if not rec.complete or rec.sent != deliveries or rec.non_2xx:
            problems.append(
                f"receiver answered {rec.sent}/{deliveries} ({rec.non_2xx} non-2xx, errors {rec.errors})"
            )
        if not base.complete or base.sent != deliveries or base.non_2xx:
            problems.append(f"bare answered {base.sent}/{deliveries} ({base.non_2xx} non-2xx)")
        for name, phase in (("with", with_metrics), ("without", without)):
            if not phase.complete or phase.sent != deliveries or phase.non_2xx:
                problems.append(f"receiver {name} metrics answered {phase.sent}/{deliveries}")
        if check["verified"] != expected or check["redeliveries"] or check["rejected"]:
            problems.append(f"database holds {check}, expected {expected} verified deliveries once each")
        if queued != expected:
            problems.append(f"{queued} process_delivery tasks queued, expected {expected}")

        ratio = rec.rate / base.rate if base.rate else 0.0
        metrics_ratio = with_metrics.rate / without.rate if without.rate else 0.0
        ok = rec.rate >= TARGET_RATE and ratio >= TARGET_RATIO and not problems
        details = {
            "deliveries": deliveries,
            "connections": connections,
            "warmup": warmup,
            "machine": quiet,
            "receiver": rec.__dict__,
            "bare": base.__dict__,
            "with_metrics_in_turn": with_metrics.__dict__,
            "without_metrics_in_turn": without.__dict__,
            "metrics_ratio": round(metrics_ratio, 3),
            "receiver_without_metrics_cpu_s": round(plain_cpu, 2),
            "database": check,
            "queued": queued,
            "receiver_cpu_s": round(receiver_cpu, 2),
            "cpu_ms_per_delivery": cpu_ms,
            "bare_cpu_s": round(bare_cpu, 2),
            "problems": problems,
        }
        (run_dir / "ingest.json").write_text(json.dumps(details, indent=2))
        for problem in problems:
            log(f"ingest: PROBLEM: {problem}")
        log(
            f"ingest: receiver CPU {receiver_cpu:.1f}s "
            f"({receiver_cpu / rec.seconds * 100:.0f}% of one core), "
            f"bare CPU {bare_cpu:.1f}s; wrk CPU {rec.generator_cpu_s:.1f}s / {base.generator_cpu_s:.1f}s; "
            f"details in {run_dir}"
        )
        gen_share = max(rec.generator_cpu_s / rec.seconds, base.generator_cpu_s / base.seconds)
        line = (
            f"ingest: receiver={rec.rate:.0f}/s p50={fmt_ms(rec.p50_ms)} p99={fmt_ms(rec.p99_ms)} "
            f"in_turn: metrics={with_metrics.rate:.0f}/s no_metrics={without.rate:.0f}/s "
            f"metrics_ratio={metrics_ratio:.2f} "
            f"bare={base.rate:.0f}/s p50={fmt_ms(base.p50_ms)} p99={fmt_ms(base.p99_ms)} "
            f"ratio={ratio:.2f} stored={check['verified'] - 2 * warmup}/{3 * deliveries} "
            f"wrk_cpu<={gen_share * 100:.0f}% "
            f"target>=1000/s,>=0.5 {'PASS' if ok else 'FAIL'}"
        )
        return finish_line(line, quiet, watch), ok
    finally:
        if jwks is not None:
            jwks.stop()
        stack.stop()


ROUNDS = 4
# Who goes first in each round: ABBA BAAB, so each phase is first and last equally often.
_FIRST_IN_ROUND = (0, 1, 1, 0)


def _round_files(stem: Path, jwks: JwksHost, jobs: list, first_seq: int) -> list[Path]:
    files, size = [], -(-len(jobs) // ROUNDS)
    for n in range(ROUNDS):
        path = stem.with_name(f"{stem.name}-{n}.req")
        part = jobs[n * size : (n + 1) * size]
        write_requests(path, signed_callbacks(jwks.key, jwks.user_id, part, first_seq + n * size))
        files.append(path)
    return files


def _in_turn(*phases: tuple[str, list[Path]], connections: int) -> list[WrkResult]:
    """Each phase's rounds, taken in turn; per phase: answers and seconds summed, the
    worst round's latencies."""
    runs: list[list[WrkResult]] = [[] for _ in phases]
    for n in range(ROUNDS):
        order = range(len(phases)) if _FIRST_IN_ROUND[n] == 0 else reversed(range(len(phases)))
        for i in order:
            url, files = phases[i]
            runs[i].append(run_wrk(url, files[n], connections=connections))
    return [
        WrkResult(
            sent=sum(r.sent for r in rs),
            non_2xx=sum(r.non_2xx for r in rs),
            seconds=sum(r.seconds for r in rs),
            p50_ms=max(r.p50_ms for r in rs),
            p90_ms=max(r.p90_ms for r in rs),
            p99_ms=max(r.p99_ms for r in rs),
            errors={k: v for r in rs for k, v in r.errors.items()},
            generator_cpu_s=sum(r.generator_cpu_s for r in rs),
            complete=all(r.complete for r in rs),
        )
        for rs in runs
    ]


def _check_database(stack: BenchStack, expected: int) -> dict:

    deadline = time.monotonic() + 10
    with get_engine(stack.database_url).connect() as conn:
        while True:
            row = conn.execute(
                text(
                    "SELECT count(*) FILTER (WHERE verified) AS verified,"
                    " count(*) FILTER (WHERE NOT verified) AS rejected,"
                    " coalesce(sum(redeliveries), 0) AS redeliveries,"
                    " count(DISTINCT request_id) AS distinct_requests"
                    " FROM webhook_deliveries"
                )
            ).one()
            conn.rollback()
            if row.verified + row.rejected >= expected or time.monotonic() > deadline:
                return dict(row._mapping)
            time.sleep(0.2)


def _queued_tasks(stack: BenchStack) -> int:

    client = redis.Redis.from_url(stack.redis_url)
    try:
        # kombu keeps one list per priority step: "falbridge", then "falbridge\x06\x16<n>".
        names = [b"falbridge", *client.keys(b"falbridge\x06\x16*")]
        return sum(client.llen(name) for name in names)
    finally:
        client.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--deliveries", type=int, default=15000)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--warmup", type=int, default=1000)
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        help="seconds to wait for a quiet machine (no chaos run, low load) first",
    )
    args = parser.parse_args(argv)
    return main_wrapper(
        "ingest", lambda: run(args.deliveries, args.connections, args.warmup, args.wait_quiet)
    )


if __name__ == "__main__":
    sys.exit(main())
