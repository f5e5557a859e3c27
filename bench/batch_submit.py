"""Batch submit: jobs per second from a JSONL file to stored, queued jobs, through
`falbridge submit --batch` over the HTTP API (POST /api/jobs/batch, 500 lines a request).

    python bench/batch_submit.py [--jobs 10000] [--chunk-size 500]

Processes, each its own: PostgreSQL, redis-server, the receiver + API (`falbridge serve`),
and the CLI (`falbridge --api URL submit --batch`) reading a file of `--jobs` lines
(a pass-through endpoint, no external ids: each line gets the one derived from the file's
digest). No worker runs: what is measured is the user's side, from the command's start to
its exit with every job stored and its submit queued. Then the same file again, which must
submit nothing (every line finds its job), at its own rate.

Prints one line:
    batch-submit: jobs=…/s (N in S s, chunks of C) again=…/s stored=N/N new-on-rerun=0 PASS|FAIL
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import text

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    API_TOKEN,
    BenchStack,
    QuietWatch,
    cpu_delta,
    finish_line,
    log,
    main_wrapper,
    run_dir_for,
    wait_quiet,
)
from falbridge.models.db import get_engine

ENDPOINT = "fal-ai/bench-echo"  # not first-class: stored as given


def write_jobs(path: Path, count: int) -> None:
    with path.open("w", encoding="utf-8") as out:
        for i in range(count):
            body = {"endpoint_id": ENDPOINT, "input": {"prompt": f"bench {i}", "seed": i}}
            out.write(json.dumps(body, separators=(",", ":")) + "\n")


def submit_file(stack: BenchStack, path: Path, chunk_size: int) -> tuple[float, str]:
    """Run the CLI on `path`; (seconds, its summary line)."""
    argv = [sys.executable, "-m", "falbridge", "--api", stack.receiver_url, "submit", "--batch", str(path)]
    argv += ["--chunk-size", str(chunk_size), "--results", str(path.with_suffix(".results.jsonl"))]
    env = {**stack.env, "FALBRIDGE_API_TOKEN": API_TOKEN}
    t0 = time.monotonic()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=1800, check=False)
    seconds = time.monotonic() - t0
    if done.returncode != 0:
        raise RuntimeError(f"falbridge submit --batch exited {done.returncode}: {done.stderr.strip()[-500:]}")
    return seconds, done.stdout.strip()


def stored_jobs(stack: BenchStack) -> int:
    with get_engine(stack.database_url).connect() as conn:
        return int(
            conn.execute(text("SELECT count(*) FROM jobs WHERE external_id LIKE 'jsonl-%'")).scalar_one()
        )


def run(jobs: int = 10000, chunk_size: int = 500, wait_quiet_s: float = 0.0) -> tuple[str, bool]:
    quiet = wait_quiet(wait_quiet_s)
    watch = QuietWatch()
    run_dir = run_dir_for("batch-submit")
    stack = BenchStack(run_dir)
    try:
        stack.start_services(wrk=False)
        stack.start_receiver()
        path = run_dir / "jobs.jsonl"
        write_jobs(path, jobs)
        log(f"batch-submit: {jobs} lines, {chunk_size} a request")
        cpu0 = stack.cpu()
        seconds, summary = submit_file(stack, path, chunk_size)
        cpu_ms = cpu_delta(cpu0, stack.cpu(), jobs)
        log(f"batch-submit: {summary}; CPU ms per job: {cpu_ms}")
        again_s, again = submit_file(stack, path, chunk_size)
        log(f"batch-submit: again: {again}")
        stored = stored_jobs(stack)
        new_on_rerun = int(again.split(" submitted")[0].split()[-1])
        ok = stored == jobs and new_on_rerun == 0
        (run_dir / "batch-submit.json").write_text(
            json.dumps({"jobs": jobs, "seconds": seconds, "again_s": again_s, "cpu_ms_per_job": cpu_ms})
        )
        line = (
            f"batch-submit: jobs={jobs / seconds:.0f}/s ({jobs} in {seconds:.1f}s, chunks of {chunk_size}) "
            f"again={jobs / again_s:.0f}/s stored={stored}/{jobs} new-on-rerun={new_on_rerun} "
            f"{'PASS' if ok else 'FAIL'}"
        )
        return finish_line(line, quiet, watch), ok
    finally:
        stack.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=10000)
    parser.add_argument("--chunk-size", type=int, default=500)
    parser.add_argument("--wait-quiet", type=float, default=0.0)
    args = parser.parse_args(argv)
    return main_wrapper("batch-submit", lambda: run(args.jobs, args.chunk_size, args.wait_quiet))


if __name__ == "__main__":
    sys.exit(main())
