"""`falbridge demo`: the two seed examples plus a mixed batch, end to end, then the history."""

from __future__ import annotations

import signal
import time
import uuid
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from falbridge import config
from falbridge.devstack.demo_stack import demo_stack, real_fal_configured
from falbridge.devstack.stack import LocalStack
from falbridge.models.db import transaction
from falbridge.models.jobs import get_job
from falbridge.models.tables import Job
from falbridge.worker import actions
from falbridge.worker.download.files import download_result_files
from falbridge.worker.download.safe_get import FetchPolicy

CAT = Path(str(resources.files("falbridge") / "assets" / "cat.png"))
EVF_SAM = "fal-ai/evf-sam"
UNREACHABLE_IMAGE = "http://127.0.0.1:9/missing.png"
REGION_PROPOSAL = "fal-ai/florence-2-large/region-proposal"


def seed_jobs() -> list[tuple[str, dict[str, Any]]]:
    return [
        (EVF_SAM, {"prompt": "Cat in the middle of the image", "image_url": CAT}),
        (REGION_PROPOSAL, {"image_url": CAT}),
    ]


def batch_jobs(n: int, *, real_fal: bool) -> list[tuple[str, dict[str, Any]]]:
    prompts = ["cat", "cat's head", "the ears", "background", "green eyes"]
    jobs = []
    for i in range(n):
        kind = i % 5
        if kind == 0:
            jobs.append(
                (
                    EVF_SAM,
                    {
                        "prompt": prompts[i % len(prompts)],
                        "image_url": CAT,
                        "blur_mask": 5,
                        "revert_mask": i % 2 == 0,
                    },
                )
            )
        elif kind == 1:
            jobs.append((REGION_PROPOSAL, {"image_url": CAT}))
        elif kind == 2 and not real_fal:
            jobs.append(("fal-ai/any-other/model", {"prompt": f"pass-through {i}", "seed": i}))
        elif kind == 3 and not real_fal:
            # An image fal cannot download: an ERROR callback and a failed job, on purpose.
            jobs.append((EVF_SAM, {"prompt": "cat", "image_url": UNREACHABLE_IMAGE}))
        else:
            jobs.append((EVF_SAM, {"prompt": "cat", "image_url": CAT, "semantic_type": True}))
    return jobs


def run_demo(*, batch: int, timeout: float, keep_running: bool = False) -> int:
    console = Console()
    if not console.is_terminal:
        console = Console(width=140)  # piped or in CI: don't squeeze the table to 80 columns
    real_fal = real_fal_configured()
    run_dir = config.current().database.resolved_var_dir() / "demo"
    console.print(
        f"[bold]falbridge demo[/] against {'the real fal' if real_fal else 'the local sandbox'}"
        f"; logs and database in {run_dir}"
    )
    with demo_stack(run_dir, real_fal=real_fal) as stack:
        if stack.sandbox_url:
            console.print(f"sandbox (standing in for fal) at {stack.sandbox_url}")
        sweeper = "falbridge beat" if config.current().broker.redis_url else "run by the worker"
        console.print(f"sweeper ({sweeper}) every {config.current().sweep.interval_s:g} s")
        work = seed_jobs() + batch_jobs(batch, real_fal=real_fal)
        ids = [actions.submit(endpoint, inp, metadata={"demo": True})[0].id for endpoint, inp in work]
        done = _wait(console, ids, timeout)
        jobs = _load(ids)
        _history(console, jobs)
        _explain_failures(console, jobs)
        _seed_outputs(console, jobs[:2], run_dir, real_fal=real_fal)
        where = config.current().database.resolved_url()
        _look_up(console, where, ids, done)
        dashboard = f"{stack.receiver_url}/dashboard/"
        if keep_running:
            console.print(f"Dashboard: {dashboard} (up until Ctrl-C)")
            _serve_until_interrupted(console, stack)
    if not keep_running:
        console.print(f"Dashboard: {dashboard} (stopped with the demo; `make demo KEEP=1` keeps it up)")
    return 0 if done == len(ids) else 1


def _look_up(console: Console, where: str, ids: Sequence[uuid.UUID], done: int) -> None:
    console.print(f"{done}/{len(ids)} jobs reached a terminal state")
    console.print(f"The jobs are in {where}; look at them with:")
    console.print(f"  DATABASE_URL={where} falbridge jobs list")
    console.print(f"  DATABASE_URL={where} falbridge jobs show {str(ids[0])[:8]}")


def _serve_until_interrupted(console: Console, stack: LocalStack) -> None:
    """Keep the stack up for a person browsing the dashboard; Ctrl-C (SIGINT) or SIGTERM
    ends it, and demo_stack's teardown then reaps every child as after a plain run. A
    receiver that died is said, not waited on forever."""
    # SIGINT too: a shell starts a background job with SIGINT ignored, and Python then
    # leaves it ignored, so `kill -INT` of a demo started with `&` did nothing.
    previous = {
        sig: signal.signal(sig, signal.default_int_handler) for sig in (signal.SIGTERM, signal.SIGINT)
    }
    try:
        while stack.receiver is None or stack.receiver.alive():
            time.sleep(0.5)
        console.print("the receiver exited; stopping the demo")
    except KeyboardInterrupt:
        console.print("stopping the demo")
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _load(ids: Sequence[uuid.UUID]) -> list[Job]:
    with transaction() as s:
        jobs = [get_job(s, job_id, full=True) for job_id in ids]
    return [job for job in jobs if job is not None]  # none is deleted while the demo runs


def _wait(console: Console, ids: Sequence[uuid.UUID], timeout: float) -> int:
    deadline = time.monotonic() + timeout
    columns = (
        TextColumn("jobs"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("", total=len(ids))
        while True:
            jobs = _load(ids)
            done = sum(j.job_status.is_terminal for j in jobs)
            counts: dict[str, int] = {}
            for j in jobs:
                counts[j.status] = counts.get(j.status, 0) + 1
            progress.update(
                task, completed=done, description=" ".join(f"{k}={v}" for k, v in sorted(counts.items()))
            )
            if done == len(ids) or time.monotonic() > deadline:
                return done
            time.sleep(0.2)


def _history(console: Console, jobs: Sequence[Job]) -> None:
    table = Table(title="job history")
    for column, width in (("job", 8), ("endpoint", 20), ("status", 9), ("seconds", 7), ("result", 20)):
        table.add_column(column, no_wrap=True, overflow="ellipsis", min_width=width)
    for job in jobs:
        took = (job.completed_at - job.created_at).total_seconds() if job.completed_at else None
        if job.status == "completed":
            summary = (
                ", ".join(f"{f.path}: {f.file_size} B" for f in job.files)
                if job.files
                else "keys: " + ", ".join(job.result or {})
            )
        else:
            summary = f"{job.error_type or ''}: {job.error or ''}"
        table.add_row(
            str(job.id)[:8], job.endpoint_id, job.status, f"{took:.2f}" if took is not None else "-", summary
        )
    console.print(table)


def _explain_failures(console: Console, jobs: Sequence[Job]) -> None:
    on_purpose = [j for j in jobs if j.status == "failed" and j.input.get("image_url") == UNREACHABLE_IMAGE]
    if on_purpose:
        console.print(
            f"{len(on_purpose)} jobs failed on purpose: their image_url ({UNREACHABLE_IMAGE}) is one "
            "fal cannot download, to show a failure end to end (error and fal's detail kept)."
        )


def _seed_outputs(console: Console, seeds: Sequence[Job], run_dir: Path, *, real_fal: bool) -> None:
    evf, florence = seeds
    # The sandbox serves files on loopback, which the fetcher refuses unless told.
    policy = FetchPolicy(allow_private=not real_fal)
    try:
        for result in download_result_files(evf, run_dir / "masks", policy):
            if (target := result.saved) is None:
                console.print(f"EVF-SAM mask could not be downloaded: {result.error}")
            else:
                console.print(f"EVF-SAM mask ({target.stat().st_size} bytes) saved to {target}")
    except Exception as exc:  # the history above is the demo's result; a copy is a bonus
        console.print(f"EVF-SAM mask could not be downloaded: {exc}")
    for f in evf.files:
        console.print(f"  fal URL: {f.url}")
    if florence.result:
        boxes = florence.result.get("results", {}).get("bboxes", [])
        console.print(f"Florence-2 region proposal: {len(boxes)} boxes, e.g. {boxes[:2]}")
