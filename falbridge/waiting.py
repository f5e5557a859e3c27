"""Waiting for a job to finish: the one loop behind `falbridge.wait` and `Client.wait`."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import TypeVar

from falbridge.errors import WaitTimeout
from falbridge.values import Job, LiveStatus

POLL_INTERVAL_S = 0.5

Progress = Callable[[LiveStatus], None]
Read = TypeVar("Read")


def wait_until_finished(read: Callable[[], Job], *, timeout: float) -> Job:
    """Read the job until it is completed, failed or cancelled; WaitTimeout after `timeout`
    seconds. Reads only the stored job: fal is not asked."""
    return _loop(read, lambda job: job, timeout=timeout)


def watch_until_finished(
    read_live: Callable[[], LiveStatus], *, timeout: float, on_progress: Progress
) -> Job:
    """`wait_until_finished`, reading fal's live status too; `on_progress` is called first,
    then whenever the status, fal's status or the queue position moves or fal logs more,
    with the lines not passed before in `new_logs`."""
    said: tuple[object, ...] | None = None
    shown = 0

    def tell(live: LiveStatus) -> Job:
        nonlocal said, shown
        if len(live.logs) < shown:  # fal started the job over: its log did too
            shown = 0
        new_logs = live.logs[shown:]
        now = (live.job.status, live.fal_status, live.queue_position)
        if new_logs or now != said:
            on_progress(dataclasses.replace(live, new_logs=new_logs))
        said, shown = now, len(live.logs)
        return live.job

    return _loop(read_live, tell, timeout=timeout)


def _loop(read: Callable[[], Read], job_of: Callable[[Read], Job], *, timeout: float) -> Job:
    deadline = time.monotonic() + timeout
    while True:
        job = job_of(read())
        if job.is_terminal:
            return job
        if time.monotonic() >= deadline:
            raise WaitTimeout(job, timeout)
        time.sleep(min(POLL_INTERVAL_S, max(deadline - time.monotonic(), 0.0)))
