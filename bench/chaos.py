"""Chaos run: N jobs through the sandbox with faults on while processes are killed.

    python bench/chaos.py --jobs 2000          # `make chaos`; `make chaos N=10000`

Starts PostgreSQL (or SQLite), Redis, the sandbox (fal, with the issue's fault mix), the
receiver, two Celery workers and beat as separate processes (bench/chaos_stack.py), and
in this process a webhook subscriber that answers 500, too slowly, drops connections and
throttles (bench/chaos_subscriber.py), subscribed to every event with the retry schedule
scaled down (bench/chaos_config.py); submits N jobs over the HTTP API while SIGKILLing a
worker every few seconds, Redis and the receiver once each, and taking the subscriber
away once (bench/chaos_load.py); waits for every job to end and the outgoing deliveries
to settle; compares the database with the sandbox's ground truth (bench/chaos_report.py)
and what the subscriber accepted with the jobs' events (bench/chaos_events.py; each
docstring lists its rules); prints one summary. Exit 0 only when every job is terminal,
with no mismatch and no duplicate result row, and no event lost, mismatched or badly
signed; 1 otherwise; 2 when it cannot run at all.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TextIO

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
from sqlalchemy import func, select

from bench.chaos_config import (
    NOTIFY_SCHEDULE_SCALE,
    SUBSCRIBER_AWAY_S,
    SUBSCRIBER_SLOW_S,
    Timings,
)
from bench.chaos_events import EventReport, build_event_report
from bench.chaos_load import ChaosMonkey, Progress, Submitter
from bench.chaos_report import Report, build_report, fal_peak, flow_line, summary_lines
from bench.chaos_stack import ROOT, ChaosStack, StackConfig
from bench.chaos_subscriber import FaultySubscriber
from falbridge.devstack.services import find_pg_bin
from falbridge.models.db import get_engine, transaction
from falbridge.models.tables import EventDelivery, ResultFile, StoredFile, WebhookDelivery


@dataclass
class ChaosOptions:
    jobs: int = 2000
    seed: int = 1
    kill_every_s: float = 4.0
    max_kills: int | None = None
    min_kills: int = 0  # keep killing after the last submission until this many
    timeout_s: float = 1200.0  # for convergence, after the last job was submitted
    database: str = "postgresql"
    rate: float = 25.0  # job submissions per second
    max_in_flight: int = 150
    run_dir: Path | None = None
    timings: Timings = field(default_factory=Timings)
    echo: bool = True  # progress on stderr
    notify_schedule_scale: float = NOTIFY_SCHEDULE_SCALE
    subscriber_away_s: float = SUBSCRIBER_AWAY_S
    notify_settle_s: float = 300.0  # for the outgoing deliveries, after the jobs converged
    flow_cap: int = 0  # FALBRIDGE_MAX_IN_FLIGHT; 0: flow control off


@dataclass
class ChaosResult:
    report: Report
    events: EventReport
    lines: list[str]
    run_dir: Path
    kills: int
    redis_restarts: int
    receiver_restarts: int
    elapsed_s: float
    problems: list[str]

    @property
    def ok(self) -> bool:
        return self.report.ok and self.events.ok and not self.problems


class Unavailable(RuntimeError):
    """The run cannot happen here (e.g. no PostgreSQL binaries)."""


def run_chaos(options: ChaosOptions) -> ChaosResult:
    if options.database == "postgresql" and find_pg_bin() is None:
        raise Unavailable(
            "chaos: PostgreSQL server binaries not found (pg_ctl on PATH or under "
            "/usr/lib/postgresql/*/bin); install postgresql or use --database sqlite"
        )
    stamp = time.strftime("%Y%m%d-%H%M%S")
    run_dir = options.run_dir or ROOT / "var" / "chaos" / stamp
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / "chaos.log", "a", buffering=1) as log_file:
        return _run_logged(options, run_dir, stamp, log_file)


def _run_logged(options: ChaosOptions, run_dir: Path, stamp: str, log_file: TextIO) -> ChaosResult:
    def log(message: str) -> None:
        log_file.write(message + "\n")
        if options.echo:
            print(message, file=sys.stderr, flush=True)

    stack = ChaosStack(
        StackConfig(
            run_dir=run_dir,
            database=options.database,
            seed=options.seed,
            timings=options.timings,
            notify_schedule_scale=options.notify_schedule_scale,
            flow_cap=options.flow_cap,
        )
    )
    subscriber = FaultySubscriber(seed=options.seed, slow_s=SUBSCRIBER_SLOW_S)
    progress = monkey = ticker = None
    problems: list[str] = []
    t0 = time.monotonic()
    try:
        log(f"chaos: starting services in {run_dir}")
        stack.start()
        subscriber.start()
        made = stack.subscribe(subscriber.url, ["job.status_changed"])
        subscriber.secret = made["secret"]  # its signature checks start with the first event
        log(f"chaos: subscriber {subscriber.url} subscribed to every event ({made['made_by']})")
        (run_dir / "stack.json").write_text(
            json.dumps({**stack.describe(), "subscriber": subscriber.url}, indent=2)
        )

        engine = get_engine(stack.database_url)
        progress = Progress(engine).start()
        t0 = time.monotonic()
        log(f"chaos: services up; submitting {options.jobs} jobs at <= {options.rate}/s")
        submitter = Submitter(
            stack.receiver_url,
            stack.api_token,
            f"{stamp}-{options.seed}",
            options.jobs,
            rate=options.rate,
            max_in_flight=options.max_in_flight,
            progress=progress,
        )
        monkey = ChaosMonkey(
            stack,
            lambda: submitter.stats.done,
            options.jobs,
            kill_every_s=options.kill_every_s,
            max_kills=options.max_kills,
            log=log,
            t0=t0,
            subscriber=subscriber,
            away_s=options.subscriber_away_s,
        ).start()
        ticker = _Ticker(log, progress, submitter, t0)
        ticker.start()
        submitter.run()
        monkey.stop(min_kills=options.min_kills)
        stats = submitter.stats
        log(
            f"chaos: submitted {stats.done} ({stats.created} created, {stats.replayed} answered by "
            f"a retried POST, {stats.retries} retries) in {time.monotonic() - t0:.0f}s; chaos stopped"
        )
        problems += stats.failures[:20] + monkey.errors
        wanted_outages = 1 if options.subscriber_away_s > 0 else 0
        if not (
            monkey.redis_restarts
            and monkey.receiver_restarts
            and monkey.kills >= options.min_kills
            and monkey.subscriber_outages >= wanted_outages
        ):
            problems.append(
                f"chaos incomplete: kills={monkey.kills} redis_restarts={monkey.redis_restarts} "
                f"receiver_restarts={monkey.receiver_restarts} "
                f"subscriber_outages={monkey.subscriber_outages}"
            )
        ticker.phase = "converging"
        # Jobs the API stored (a POST may have failed after its commit, so count rows).
        progress.refresh()
        _converge(progress, max(progress.total, stats.done), options.timeout_s, log)
        ticker.stopped.set()
        _settle(stack, engine, log)
        unstored = _settle_storing(engine, 120.0, log)
        if unstored:
            problems.append(f"{unstored} completed jobs have files neither stored nor recorded missing")
        ticker.phase = "delivering"
        _settle_deliveries(engine, options.notify_settle_s, log)
        elapsed = time.monotonic() - t0
        truth = httpx.get(f"{stack.sandbox_url}/_sandbox/requests", timeout=120).json()
        report = build_report(engine, truth, options.jobs)
        stats = subscriber.stats()
        events = build_event_report(
            engine,
            list(subscriber.log.received),
            bad_signatures=stats["bad_signatures"],
            requests=stats["requests"],
            faults=stats["faults"],
            outages=stats["outages"],
        )
    finally:
        if ticker is not None:
            ticker.stopped.set()
        if progress is not None:
            progress.stop()
        if monkey is not None:
            monkey.stop()
        stack.stop()
        subscriber.stop()
        log_file.flush()
    lines = summary_lines(
        report,
        kills=monkey.kills,
        redis_restarts=monkey.redis_restarts,
        receiver_restarts=monkey.receiver_restarts,
        elapsed_s=elapsed,
        database=options.database,
        run_dir=str(run_dir),
        events=events,
    )
    if options.flow_cap:
        lines.insert(-1, flow_line(truth, options.flow_cap, len(report.doubles)))
        problems += (
            [] if fal_peak(truth) <= options.flow_cap + len(report.doubles) else ["flow cap exceeded at fal"]
        )
    if problems:
        lines.insert(-1, f"chaos: harness problems: {'; '.join(problems[:5])}")
    result = ChaosResult(
        report,
        events,
        lines,
        run_dir,
        monkey.kills,
        monkey.redis_restarts,
        monkey.receiver_restarts,
        elapsed,
        problems,
    )
    _write_report(result, monkey, run_dir)
    for line in lines:
        log_file.write(line + "\n")
    return result


class _Ticker(threading.Thread):
    """A progress line every 10 s, so a long run shows it is moving."""

    def __init__(self, log, progress, submitter, t0):
        super().__init__(name="chaos-ticker", daemon=True)
        self.log, self.progress, self.submitter, self.t0 = log, progress, submitter, t0
        self.phase = "submitting"
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(10):
            self.log(
                f"[{time.monotonic() - self.t0:7.1f}s] {self.phase}: submitted={self.submitter.stats.done} "
                f"terminal={self.progress.terminal}"
            )


def _converge(progress: Progress, jobs: int, timeout_s: float, log) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if progress.terminal >= jobs:
            log(f"chaos: all {jobs} jobs terminal")
            return
        time.sleep(0.2)
    log(f"chaos: timeout: {progress.terminal}/{jobs} terminal after {timeout_s:.0f}s")


def _settle(stack: ChaosStack, engine, log) -> None:
    """Let late callbacks (duplicates, delayed copies, retries) land and be applied before
    judging: a late copy that changed a finished job must show up in the comparison."""

    with contextlib.suppress(httpx.HTTPError):  # then the loop below waits on its own
        httpx.get(f"{stack.sandbox_url}/_sandbox/idle", params={"timeout": 60}, timeout=70)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with transaction(engine) as s:
            left = s.scalar(
                select(func.count())
                .select_from(WebhookDelivery)
                .where(WebhookDelivery.verified.is_(True), WebhookDelivery.processed_at.is_(None))
            )
        if not left:
            return
        time.sleep(0.5)
    log(f"chaos: {left} verified deliveries still unprocessed after settling")


def _settle_storing(engine, timeout_s: float, log) -> int:
    """Wait for falbridge to store (or record missing) every file of the completed jobs:
    the storing task runs after completion, with retries, and is judged for the large
    results whose callback was dropped."""
    deadline = time.monotonic() + timeout_s
    left = 0
    while time.monotonic() < deadline:
        with transaction(engine) as s:
            files = dict(s.execute(select(ResultFile.job_id, func.count()).group_by(ResultFile.job_id)).all())
            recorded = dict(
                s.execute(select(StoredFile.job_id, func.count()).group_by(StoredFile.job_id)).all()
            )
        left = sum(1 for job_id, n in files.items() if recorded.get(job_id, 0) < n)
        if not left:
            log("chaos: every result file stored or recorded missing")
            return 0
        time.sleep(1.0)
    log(f"chaos: {left} completed jobs have files neither stored nor recorded missing after {timeout_s:.0f}s")
    return left


def _settle_deliveries(engine, timeout_s: float, log) -> None:
    """Wait for the outgoing deliveries to end (delivered or exhausted): the scaled
    schedule's last attempts come minutes after the event; a worker killed mid-attempt
    leaves one in flight until its lease runs out and the sweeper re-drives it."""
    deadline = time.monotonic() + timeout_s
    left = 0
    while time.monotonic() < deadline:
        with transaction(engine) as s:
            left = s.scalar(
                select(func.count())
                .select_from(EventDelivery)
                .where(EventDelivery.status.in_(("pending", "in_flight")))
            )
        if not left:
            log("chaos: every outgoing delivery settled")
            return
        time.sleep(1.0)
    log(f"chaos: {left} outgoing deliveries still pending or in flight after {timeout_s:.0f}s")


def _write_report(result: ChaosResult, monkey: ChaosMonkey, run_dir: Path) -> None:
    report = result.report
    doc = {
        "summary": result.lines,
        "ok": result.ok,
        "problems": result.problems,
        "statuses": dict(report.statuses),
        "mismatches": report.mismatches[:500],
        "double_submissions": report.doubles,
        "duplicate_result_rows": report.duplicate_rows[:500],
        "large_results_without_callback": report.large_timelines[:500],
        "outgoing_webhooks": result.events.problems(),
        "events": [asdict(e) for e in monkey.events],
    }
    (run_dir / "report.json").write_text(json.dumps(doc, indent=2, default=str))


def _interrupt(*_) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--kill-every", type=float, default=4.0, help="seconds between worker SIGKILLs")
    parser.add_argument("--timeout", type=float, default=1200.0, help="seconds to wait for convergence")
    parser.add_argument("--database", choices=("postgresql", "sqlite"), default="postgresql")
    parser.add_argument("--rate", type=float, default=25.0, help="job submissions per second")
    parser.add_argument("--max-in-flight", type=int, default=150, help="cap on unfinished jobs")
    parser.add_argument("--run-dir", type=Path)
    parser.add_argument(
        "--notify-scale",
        type=float,
        default=NOTIFY_SCHEDULE_SCALE,
        help="FALBRIDGE_NOTIFY_SCHEDULE_SCALE for the workers (the retry schedule's ~day times this)",
    )
    parser.add_argument(
        "--silent-after",
        type=float,
        help="FALBRIDGE_SILENT_AFTER_S for the run (a sweeper slower than fal's window shows result_expired)",
    )
    parser.add_argument(
        "--retention-scale",
        type=float,
        help="the sandbox's retention_scale (fal's 6 min for large results times this)",
    )
    parser.add_argument(
        "--subscriber-away", type=float, default=SUBSCRIBER_AWAY_S, help="seconds of the subscriber's outage"
    )
    parser.add_argument(
        "--flow-cap",
        type=int,
        default=0,
        help="run with flow control on: FALBRIDGE_MAX_IN_FLIGHT for the workers (0: off)",
    )
    args = parser.parse_args(argv)
    timings = Timings()
    if args.silent_after is not None:
        timings = dataclasses.replace(timings, silent_after_s=args.silent_after)
    if args.retention_scale is not None:
        timings = dataclasses.replace(timings, retention_scale=args.retention_scale)
    options = ChaosOptions(
        timings=timings,
        jobs=args.jobs,
        seed=args.seed,
        kill_every_s=args.kill_every,
        timeout_s=args.timeout,
        database=args.database,
        rate=args.rate,
        max_in_flight=args.max_in_flight,
        run_dir=args.run_dir,
        notify_schedule_scale=args.notify_scale,
        subscriber_away_s=args.subscriber_away,
        flow_cap=args.flow_cap,
    )
    # SIGTERM (e.g. from CI) unwinds like Ctrl-C, so the finally blocks reap every child.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        result = run_chaos(options)
    except Unavailable as exc:
        print(str(exc), file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # every child was already reaped by run_chaos's finally
        print("chaos: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a service that would not start, the sandbox unreachable...
        print(f"chaos: FAIL: the run broke down: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print("\n".join(result.lines), flush=True)
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
