"""Webhook delivery: signed POSTs from a small worker pool, with retries and fault shaping.

Attempts wait in a heap ordered by due time; workers pop due attempts, send them with one
shared httpx.Client, report the result to the sandbox core and schedule whatever the core
says comes next (a retry, duplicate copies). Request threads never send webhooks, except
for the webhook-before-response fault, which calls `deliver_now`.
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from falbridge.sandbox.activity import Activity
from falbridge.sandbox.config import SandboxConfig
from falbridge.sandbox.faults import decide_attempt_faults
from falbridge.sandbox.jobs import Job
from falbridge.sandbox.signing import KeyRing, corrupt, sign

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeliveryTask:
    job: Job
    generation: int
    url: str
    body: bytes
    kind: str = "original"  # or "duplicate"
    copy: int = 0  # 0 for the original, 1..N for duplicate copies
    attempt: int = 1

    def next_attempt(self) -> DeliveryTask:
        return dataclasses.replace(self, attempt=self.attempt + 1)


class DeliveryCore(Protocol):
    """What the deliverer needs from the sandbox's core (falbridge.sandbox.core.Sandbox),
    which owns it: said here, so this module need not import the core."""

    config: SandboxConfig
    activity: Activity
    keys: KeyRing

    def record_delivery(
        self, task: DeliveryTask, record: dict[str, Any], delivered: bool
    ) -> list[tuple[DeliveryTask, float]]: ...


class Deliverer:
    def __init__(self, core: DeliveryCore, workers: int) -> None:
        self._core = core
        self._workers = workers
        self._cond = threading.Condition(threading.Lock())
        self._heap: list[tuple[float, int, DeliveryTask]] = []
        self._tiebreak = itertools.count()
        self._stopping = False
        self._threads: list[threading.Thread] = []
        self._client = httpx.Client(
            follow_redirects=False,  # fal does not follow redirects on webhooks
            limits=httpx.Limits(max_connections=workers * 2, max_keepalive_connections=workers * 2),
        )

    def start(self) -> None:
        for index in range(self._workers):
            thread = threading.Thread(target=self._run, name=f"sandbox-delivery-{index}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 2.0) -> None:
        with self._cond:
            self._stopping = True
            dropped = len(self._heap)
            self._heap.clear()
            self._cond.notify_all()
        self._core.activity.end(dropped)
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self._client.close()

    def schedule(self, task: DeliveryTask, delay_s: float = 0.0) -> None:
        self._core.activity.begin()
        with self._cond:
            heapq.heappush(self._heap, (time.monotonic() + delay_s, next(self._tiebreak), task))
            self._cond.notify()

    def clear(self) -> None:
        """Forget every scheduled attempt (reset); attempts already on the wire finish."""
        with self._cond:
            dropped = len(self._heap)
            self._heap.clear()
        self._core.activity.end(dropped)

    def pending(self) -> int:
        return len(self._heap)

    def deliver_now(self, task: DeliveryTask) -> None:
        self._core.activity.begin()
        self._attempt(task)

    def _run(self) -> None:
        while True:
            task = self._next_due()
            if task is None:
                return
            try:
                self._attempt(task)
            except Exception:  # a bug here must not kill the worker
                _log.exception("webhook delivery crashed")

    def _next_due(self) -> DeliveryTask | None:
        with self._cond:
            while not self._stopping:
                if not self._heap:
                    self._cond.wait()
                    continue
                wait = self._heap[0][0] - time.monotonic()
                if wait <= 0:
                    return heapq.heappop(self._heap)[2]
                self._cond.wait(wait)
            return None

    def _attempt(self, task: DeliveryTask) -> None:
        """Send one attempt; the caller's activity token is released here, whatever happens."""
        try:
            self._send_and_record(task)
        finally:
            self._core.activity.end()

    def _send_and_record(self, task: DeliveryTask) -> None:
        core, job = self._core, task.job
        config = core.config
        faults = decide_attempt_faults(job.faults, config.seed, job.seq, task.kind, task.copy, task.attempt)
        timestamp = str(int(time.time() - faults.stale_by_s))
        signature = sign(core.keys.signing_key, job.request_id, config.user_id, timestamp, task.body)
        if faults.bad_signature:
            signature = corrupt(signature)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "fal-sandbox-webhook/1",
            "X-Fal-Webhook-Request-Id": job.request_id,
            "X-Fal-Webhook-User-Id": config.user_id,
            "X-Fal-Webhook-Timestamp": timestamp,
            "X-Fal-Webhook-Signature": signature,
        }
        sent_at = time.time()
        status, error = self._post(task, headers, config.delivery_timeout_s)
        record: dict[str, Any] = {
            "attempt": task.attempt,
            "kind": task.kind,
            "copy": task.copy,
            "at": sent_at,
            "duration_s": round(time.time() - sent_at, 6),
            "timestamp": timestamp,
            "http_status": status,
            "error": error,
            "signature_valid": not faults.bad_signature,
            "timestamp_stale": faults.stale_by_s > 0,
            "user_id": config.user_id,
            "kid": core.keys.signing_key.kid,
        }
        for follow_up, delay in core.record_delivery(
            task, record, status is not None and 200 <= status < 300
        ):
            self.schedule(follow_up, delay)

    def _post(
        self, task: DeliveryTask, headers: dict[str, str], timeout: float
    ) -> tuple[int | None, str | None]:
        try:
            response = self._client.post(task.url, content=task.body, headers=headers, timeout=timeout)
        except httpx.TimeoutException as exc:
            return None, f"timeout: {type(exc).__name__}"
        except (httpx.HTTPError, RuntimeError) as exc:  # RuntimeError: client closed at shutdown
            return None, f"{type(exc).__name__}: {exc}"
        if 200 <= response.status_code < 300:
            return response.status_code, None
        return response.status_code, f"HTTP {response.status_code}"
