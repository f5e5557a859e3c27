"""Waiting for a job to finish: the one loop behind `falbridge.wait` and `Client.wait`."""

from __future__ import annotations

import time
from collections.abc import Callable

from falbridge.errors import WaitTimeout
from falbridge.values import Job

POLL_INTERVAL_S = 0.5


def wait_until_finished(
    read: Callable[[], Job], *, timeout: float, on_change: Callable[[Job], None] | None = None
) -> Job:
    """Read the job until it is completed, failed or cancelled; WaitTimeout after `timeout`
    seconds. `on_change` sees the job first, then whenever its status moves."""
    deadline = time.monotonic() + timeout
    job = read()
    seen = None
    while True:
        if on_change is not None and job.status != seen:
            on_change(job)
        seen = job.status
        if job.is_terminal:
            return job
        if time.monotonic() >= deadline:
            raise WaitTimeout(job, timeout)
        time.sleep(min(POLL_INTERVAL_S, max(deadline - time.monotonic(), 0.0)))
        job = read()
