"""Memory: receiver and worker RSS before and after 100,000 deliveries.

    python bench/memory.py [--deliveries 100000] [--concurrency 4]

The receiver (`falbridge serve`) and a worker (`falbridge worker`, prefork) run on
PostgreSQL and redis-server. 100,000 jobs are created (submitted, with request ids) and
one completion callback per job is signed, in batches of 20,000 just before wrk replays
each batch to the receiver (a signature older than 300 s is refused), while the worker
applies them (each job completed with its result file, and the file, a PNG mask served
from this process as fal's CDN would, stored in a directory of the run: without it, every
file's download failed for want of the internet, and thousands of store tasks waiting for
their retry sat in the worker's memory). RSS is the sum over each
process group (gunicorn master + workers; Celery main process + pool children), read
from /proc: "before" after a warm-up of 2,000 deliveries (imports, pools, caches filled),
"after" once all 100,000 are stored and applied and their files stored. The database
must hold every delivery once, every one processed, every job completed, every file stored.

Prints one line:
    memory: receiver … -> … MiB (+x%) worker … -> … MiB (+y%) deliveries=N target<10% PASS|FAIL
"""

from __future__ import annotations

import argparse
import http.server
import io
import json
import sys
import threading
import time
from pathlib import Path

from PIL import Image
from sqlalchemy import text

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    BenchStack,
    JwksHost,
    Profiler,
    QuietWatch,
    WrkResult,
    finish_line,
    insert_submitted_jobs,
    log,
    main_wrapper,
    run_dir_for,
    run_wrk,
    signed_callbacks,
    wait_quiet,
    write_requests,
)
from bench.pipeline_units import storage_env
from falbridge.models.db import get_engine

TARGET_GROWTH = 0.10
BATCH = 20_000


def run(
    deliveries: int = 100_000,
    concurrency: int = 4,
    warmup: int = 2000,
    connections: int = 32,
    wait_quiet_s: float = 0.0,
    batch: int = BATCH,
) -> tuple[str, bool]:
    quiet = wait_quiet(wait_quiet_s)
    watch = QuietWatch()
    run_dir = run_dir_for("memory")
    stack = BenchStack(run_dir)
    jwks = masks = None
    try:
        stack.start_services()
        jwks, masks = JwksHost(), MaskHost()
        stack.set_env({"FAL_JWKS_URL": jwks.jwks_url, "FAL_WEBHOOK_USER_ID": jwks.user_id})
        # Every job's mask stored, fetched from this process over loopback, as fal's CDN
        # would serve it: the storing step's memory is measured too.
        stack.set_env({**storage_env(run_dir), "FALBRIDGE_FETCH_ALLOW_PRIVATE": "1"})
        receiver = stack.start_receiver()
        worker = stack.start_worker(concurrency=concurrency)
        url = stack.receiver_url

        jobs = insert_submitted_jobs(stack.database_url, warmup + deliveries, "bench-mem")
        warm_file, main_file = run_dir / "warmup.req", run_dir / "deliveries.req"
        write_requests(
            warm_file, signed_callbacks(jwks.key, jwks.user_id, jobs[:warmup], file_base=masks.url)
        )
        run_wrk(url, warm_file, connections=connections)
        _wait_processed(stack, warmup, timeout_s=120)
        time.sleep(1)
        before = {"receiver": receiver.rss_kib(), "worker": worker.rss_kib()}
        log(
            f"memory: after {warmup} warm-up deliveries: receiver {before['receiver'] / 1024:.0f} MiB "
            f"({len(receiver.pids())} processes), worker {before['worker'] / 1024:.0f} MiB "
            f"({len(worker.pids())} processes)"
        )

        log(f"memory: replaying {deliveries} deliveries while the worker applies them")
        profiler = Profiler(run_dir, [receiver, worker])
        try:
            batches = []
            for start in range(0, deliveries, batch):
                # Each batch signed just before it is sent: the receiver refuses a signature
                # more than 300 s old, and 100,000 take longer than that here.
                chunk = jobs[warmup + start : warmup + start + batch]
                write_requests(
                    main_file, signed_callbacks(jwks.key, jwks.user_id, chunk, warmup + start, masks.url)
                )
                batches.append(run_wrk(url, main_file, connections=connections, cap_s=900))
            sent = _combined(batches)
            log(
                f"memory: receiver took {sent.sent} in {sent.seconds:.0f}s ({sent.rate:.0f}/s, "
                f"{len(batches)} batches); waiting for the worker"
            )
            t_sent = time.monotonic()
            counts = _wait_processed(stack, warmup + deliveries, timeout_s=900)
        finally:
            profiler.stop()
        applied_s = time.monotonic() - sent.t_first if sent.t_first else 0.0
        log(
            f"memory: worker applied the last delivery {time.monotonic() - t_sent:.0f}s "
            "after the last was stored"
        )
        time.sleep(1)
        after = {"receiver": receiver.rss_kib(), "worker": worker.rss_kib()}

        growth = {name: (after[name] - before[name]) / before[name] for name in before}
        problems = []
        if not sent.complete or sent.sent != deliveries or sent.non_2xx:
            problems.append(
                f"receiver answered {sent.sent}/{deliveries} ({sent.non_2xx} non-2xx, errors {sent.errors})"
            )
        total = warmup + deliveries
        wanted = {
            "verified": total,
            "processed": total,
            "completed": total,
            "redeliveries": 0,
            "stored": total,
        }
        if {name: counts[name] for name in wanted} != wanted:
            problems.append(
                f"database: {counts}, expected {total} deliveries stored once, processed, jobs completed,"
                " their masks stored"
            )
        ok = max(growth.values()) < TARGET_GROWTH and not problems
        details = {
            "deliveries": deliveries,
            "warmup": warmup,
            "concurrency": concurrency,
            "machine": quiet,
            "rss_kib_before": before,
            "rss_kib_after": after,
            "growth": growth,
            "database": counts,
            "wrk": sent.__dict__,
            "wrk_batches": [b.__dict__ for b in batches],
            "applied_s": applied_s,
            "problems": problems,
        }
        (run_dir / "memory.json").write_text(json.dumps(details, indent=2))
        for problem in problems:
            log(f"memory: PROBLEM: {problem}")
        log(f"memory: details in {run_dir}")
        mib = lambda kib: f"{kib / 1024:.0f}"  # noqa: E731
        line = (
            f"memory: receiver {mib(before['receiver'])}->{mib(after['receiver'])}MiB "
            f"({growth['receiver'] * 100:+.1f}%) worker {mib(before['worker'])}->{mib(after['worker'])}MiB "
            f"({growth['worker'] * 100:+.1f}%) deliveries={counts['processed'] - warmup}/{deliveries} "
            f"applied in {applied_s:.0f}s ({deliveries / applied_s if applied_s else 0:.0f}/s) "
            f"target<10% {'PASS' if ok else 'FAIL'}"
        )
        return finish_line(line, quiet, watch), ok
    finally:
        for host in (jwks, masks):
            if host is not None:
                host.stop()
        stack.stop()


class MaskHost:
    """fal's CDN for the pre-built callbacks: the same PNG mask at every path, on loopback."""

    def __init__(self) -> None:
        image = io.BytesIO()
        Image.new("L", (1024, 768), 0).save(image, "PNG")
        mask = image.getvalue()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("Content-Length", str(len(mask)))
                self.end_headers()
                self.wfile.write(mask)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/files"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _combined(batches: list[WrkResult]) -> WrkResult:
    """The batches as one replay: first request of the first to last answer of the last
    (signing between batches included); latency percentiles are the worst batch's."""
    errors: dict = {}
    for b in batches:
        for name, count in b.errors.items():
            errors[name] = errors.get(name, 0) + count
    first, last = batches[0], batches[-1]
    return WrkResult(
        sent=sum(b.sent for b in batches),
        non_2xx=sum(b.non_2xx for b in batches),
        seconds=(last.t_last - first.t_first) if first.t_first else sum(b.seconds for b in batches),
        p50_ms=max(b.p50_ms for b in batches),
        p90_ms=max(b.p90_ms for b in batches),
        p99_ms=max(b.p99_ms for b in batches),
        errors=errors,
        generator_cpu_s=sum(b.generator_cpu_s for b in batches),
        complete=all(b.complete for b in batches),
        t_first=first.t_first,
        t_last=last.t_last,
    )


def _counts(stack: BenchStack) -> dict:

    with get_engine(stack.database_url).connect() as conn:
        row = conn.execute(
            text(
                "SELECT (SELECT count(*) FROM webhook_deliveries WHERE verified) AS verified,"
                " (SELECT count(*) FROM webhook_deliveries WHERE processed_at IS NOT NULL) AS processed,"
                " (SELECT coalesce(sum(redeliveries), 0) FROM webhook_deliveries) AS redeliveries,"
                " (SELECT count(*) FROM jobs WHERE status = 'completed') AS completed,"
                " (SELECT count(*) FROM result_files) AS result_files,"
                " (SELECT count(*) FROM stored_files WHERE status = 'stored') AS stored"
            )
        ).one()
    return dict(row._mapping)


def _wait_processed(stack: BenchStack, expected: int, timeout_s: float) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        counts = _counts(stack)
        done = counts["processed"] >= expected and counts["stored"] >= expected
        if done or time.monotonic() > deadline:
            return counts
        time.sleep(0.5)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--deliveries", type=int, default=100_000)
    parser.add_argument("--concurrency", type=int, default=4, help="worker processes (prefork)")
    parser.add_argument("--warmup", type=int, default=2000)
    parser.add_argument("--wait-quiet", type=float, default=0.0)
    parser.add_argument(
        "--batch",
        type=int,
        default=BATCH,
        help="deliveries signed and replayed at a time (signatures expire after 300 s)",
    )
    args = parser.parse_args(argv)
    return main_wrapper(
        "memory",
        lambda: run(
            args.deliveries, args.concurrency, args.warmup, wait_quiet_s=args.wait_quiet, batch=args.batch
        ),
    )


if __name__ == "__main__":
    sys.exit(main())
