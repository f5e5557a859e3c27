"""`make bench`: the six speed benchmarks, one after another, one summary line each.

    python bench/all.py [--only ingest,history] [--verbose]

Each benchmark runs as its own process (bench/ingest.py, pipeline.py, history.py,
memory.py, outgoing.py, batch_submit.py) with its own PostgreSQL cluster and redis-server,
so none inherits another's state. Their progress goes to var/bench/make-<time>.log (to the terminal with
--verbose); their summary lines come here. Exit 0 when every target is met, 1 when one
is missed or a benchmark failed, 2 (one line) when PostgreSQL or wrk is missing.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import Unavailable, require_tools, wait_quiet  # noqa: E402

# What `make bench` runs, sized so they finish in about ten minutes here. Every script's
# own defaults are the full sizes, but at this machine's ~40 jobs/s the pipeline's
# 20,000 jobs alone take 9 minutes and memory's 100,000 deliveries about 15, so make bench
# runs 6,000 jobs and 10,000 deliveries (README, "Performance", has the full-size commands
# and their figures). Since issue 17 the pipeline also stores every result file and
# delivers two events a job: ~100 ms of CPU a job for all processes in its 300-job runs
# (loaded machine), against ~42 before, so its 6,000 jobs take longer.
BENCHMARKS = {
    "ingest": ["--deliveries", "10000"],
    "pipeline": ["--jobs", "6000"],
    "history": ["--rows", "1000000"],
    "memory": ["--deliveries", "10000"],
    "outgoing": ["--events", "2000"],
    "batch_submit": ["--jobs", "10000"],  # the size: no worker, seconds here
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default=",".join(BENCHMARKS), help="comma-separated subset")
    parser.add_argument("--verbose", action="store_true", help="stream each benchmark's progress")
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        help="seconds to wait for a quiet machine (no chaos run, low load) first",
    )
    args = parser.parse_args(argv)
    try:
        require_tools()
    except Unavailable as exc:
        print(f"bench: cannot run: {exc}", flush=True)
        return 2
    note = wait_quiet(args.wait_quiet)
    log_path = ROOT / "var" / "bench" / f"make-{time.strftime('%Y%m%d-%H%M%S')}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    print(f"bench: machine {note}; progress in {log_path.relative_to(ROOT)}", flush=True)
    t0 = time.monotonic()
    worst = 0
    with open(log_path, "a", buffering=1) as log:
        for name in [n.strip() for n in args.only.split(",") if n.strip()]:
            if name not in BENCHMARKS:
                print(f"bench: unknown benchmark {name!r}", flush=True)
                return 2
            started = time.monotonic()
            log.write(f"=== {name}\n")
            proc = subprocess.Popen(
                [sys.executable, str(ROOT / "bench" / f"{name}.py"), *BENCHMARKS[name]],
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for line in proc.stderr:  # progress
                log.write(line)
                if args.verbose:
                    sys.stderr.write(line)
            out = proc.stdout.read()
            code = proc.wait()
            lines = [line for line in out.splitlines() if line.strip()]
            log.write(out)
            summary = lines[-1] if lines else f"{name}: no summary (exit {code}); see {log_path}"
            print(f"{summary}  [{time.monotonic() - started:.0f}s]", flush=True)
            worst = max(worst, 1 if code else 0) if code != 2 else 2
    print(f"bench: total {time.monotonic() - t0:.0f}s", flush=True)
    return worst


if __name__ == "__main__":
    sys.exit(main())
