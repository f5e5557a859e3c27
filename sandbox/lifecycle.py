"""The queue: IN_QUEUE → IN_PROGRESS → COMPLETED with a bounded number of runners.

Waiting jobs sit in one list sorted by (priority rank, submit sequence), so a low-priority
job waits behind every normal one and `queue_position` is a bisect. Worker threads (as
many as `concurrency`) take the head once its queue latency has passed, run the fake
model outside any lock, keep the job IN_PROGRESS for `latency_s`, then hand the outcome
to the core. All state here is guarded by the core's state lock (`core.cond`).
"""

from __future__ import annotations

import bisect
import logging
import threading
import time
from collections import Counter
from typing import Protocol

import httpx

from falbridge.sandbox import fake_models
from falbridge.sandbox.config import LARGE_RESULT_BYTES, SandboxConfig
from falbridge.sandbox.fake_models import ModelOutcome
from falbridge.sandbox.faults import model_rng
from falbridge.sandbox.files import FileStore
from falbridge.sandbox.jobs import IN_PROGRESS, Job, log_entry

_log = logging.getLogger(__name__)
PRIORITY_RANK = {"normal": 0, "low": 1}


class LifecycleCore(Protocol):
    """What the lifecycle needs from the sandbox's core (falbridge.sandbox.core.Sandbox),
    which owns it: said here, so this module need not import the core."""

    config: SandboxConfig
    cond: threading.Condition
    stop_event: threading.Event
    files: FileStore
    fetcher: httpx.Client

    def complete(
        self, job: Job, outcome: ModelOutcome, deliver_inline: bool = False, free_runner: bool = False
    ) -> None: ...

    def complete_locked(self, job: Job, outcome: ModelOutcome) -> None: ...


class Lifecycle:
    def __init__(self, core: LifecycleCore) -> None:
        self._core = core
        self._cond = core.cond
        self._keys: list[tuple[int, int]] = []
        self._waiting: dict[tuple[int, int], Job] = {}
        self._waiting_per_endpoint: Counter[str] = Counter()
        self._running = 0
        self._threads: list[threading.Thread] = []
        self._stopping = False

    # -- called with core.cond held -------------------------------------------------

    def enqueue(self, job: Job) -> int:
        job.queue_key = (PRIORITY_RANK[job.priority], job.seq)
        position = bisect.bisect_left(self._keys, job.queue_key)
        self._keys.insert(position, job.queue_key)
        self._waiting[job.queue_key] = job
        self._waiting_per_endpoint[job.endpoint_id] += 1
        self._cond.notify()
        return position

    def position(self, job: Job) -> int:
        return bisect.bisect_left(self._keys, job.queue_key)

    def waiting_for(self, endpoint_id: str) -> int:
        return self._waiting_per_endpoint[endpoint_id]

    def withdraw(self, job: Job) -> bool:
        if self._waiting.pop(job.queue_key, None) is None:
            return False
        del self._keys[bisect.bisect_left(self._keys, job.queue_key)]
        self._waiting_per_endpoint[job.endpoint_id] -= 1
        return True

    def drain(self) -> int:
        count = len(self._keys)
        self._keys.clear()
        self._waiting.clear()
        self._waiting_per_endpoint.clear()
        return count

    def runner_finished(self) -> None:
        self._running -= 1
        self._cond.notify()

    def counts(self) -> dict[str, int]:
        return {"waiting": len(self._keys), "running": self._running}

    # -- thread management ----------------------------------------------------------

    def start(self) -> None:
        self.resize()

    def resize(self) -> None:
        """Make sure there are enough runner threads for the current concurrency."""
        with self._cond:
            while len(self._threads) < self._core.config.concurrency and not self._stopping:
                thread = threading.Thread(
                    target=self._run, name=f"sandbox-runner-{len(self._threads)}", daemon=True
                )
                self._threads.append(thread)
                thread.start()
            self._cond.notify_all()

    def stop(self, timeout: float = 2.0) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    # -- running jobs ---------------------------------------------------------------

    def _run(self) -> None:
        while True:
            job = self._take()
            if job is None:
                return
            outcome = self._execute(job)
            assert job.started_at is not None  # _take marked it started
            remaining = job.started_at + self._core.config.latency_s - time.time()
            if remaining > 0:
                self._core.stop_event.wait(remaining)
            self._core.complete(job, outcome, free_runner=True)

    def _take(self) -> Job | None:
        with self._cond:
            while not self._stopping:
                config = self._core.config
                if not self._keys or self._running >= config.concurrency:
                    self._cond.wait()
                    continue
                job = self._waiting[self._keys[0]]
                now = time.time()
                wait = job.submitted_at + config.queue_latency_s - now
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                self.withdraw(job)
                if job.start_timeout_s is not None and now - job.submitted_at > job.start_timeout_s:
                    self._core.complete_locked(job, fake_models.START_TIMEOUT)
                    continue
                self._running += 1
                self.mark_started(job, now)
                return job
            return None

    def mark_started(self, job: Job, now: float) -> None:
        job.queue_status = IN_PROGRESS
        job.started_at = now
        job.logs.append(log_entry(f"Starting {job.endpoint_id}", now))
        job.logs.append(log_entry("Model loaded from cache", now, level="DEBUG"))

    def run_inline(self, job: Job) -> None:
        """Run at once on the calling thread, skipping the queue and the latency."""
        with self._cond:
            self.mark_started(job, time.time())
        self._core.complete(job, self._execute(job), deliver_inline=True)

    def _execute(self, job: Job) -> fake_models.ModelOutcome:
        if job.has_fault("error"):
            return fake_models.INJECTED_FAILURE
        core, config = self._core, self._core.config
        context = fake_models.ModelContext(
            base_url=job.base_url,
            rng=model_rng(config.seed, job.seq),
            files=core.files,
            http=core.fetcher,
            fetch_timeout_s=config.fetch_timeout_s,
            florence_image_probability=config.florence_image_probability,
        )
        try:
            outcome = fake_models.run_model(job.endpoint_id, job.input, context)
        except Exception:
            _log.exception("sandbox model %s crashed", job.endpoint_id)
            return fake_models.request_error(500, "Internal error in the sandbox model", "internal_error")
        if job.has_fault("unstorable_result"):
            outcome = fake_models.with_nul(outcome)
        if job.has_fault("large_result"):
            return fake_models.enlarged(outcome, LARGE_RESULT_BYTES)
        return outcome
