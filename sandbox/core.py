"""The sandbox's state: accepted jobs, settings, keys, files, and the transitions between.

HTTP handlers, queue runners and delivery workers all go through `Sandbox`. One condition
variable (`cond`) guards job state and the queue; it is only ever held for dictionary and
list updates, never across model runs, JSON encoding of large bodies or network I/O.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx

from falbridge.sandbox.activity import Activity
from falbridge.sandbox.config import LARGE_RESULT_BYTES, Faults, SandboxConfig, backoff_delay
from falbridge.sandbox.delivery import Deliverer, DeliveryTask
from falbridge.sandbox.fake_models import CANCELLED, ModelOutcome
from falbridge.sandbox.faults import SubmitFaults, decide_submit_faults
from falbridge.sandbox.files import FileStore
from falbridge.sandbox.jobs import COMPLETED, IN_QUEUE, Job, log_entry, webhook_body
from falbridge.sandbox.lifecycle import Lifecycle
from falbridge.sandbox.routes import EndpointId
from falbridge.sandbox.signing import KeyRing


@dataclass
class SubmitRequest:
    endpoint: EndpointId
    payload: dict[str, Any]
    webhook_url: str | None
    base_url: str
    headers_seen: dict[str, str] = field(default_factory=dict)
    query_seen: dict[str, str] = field(default_factory=dict)
    priority: str = "normal"
    start_timeout_s: float | None = None
    max_queue_length: int | None = None
    run_inline: bool = False  # fal.run: run on the caller's thread, answer the outcome


@dataclass
class Accepted:
    job: Job
    queue_position: int
    response_lost: bool
    response_delay_s: float


@dataclass
class Rejected:
    status: int
    reason: str  # "submit_5xx", "submit_429" or "queue_full"
    retry_after_s: float | None = None
    detail: str = ""


def body_size(outcome: ModelOutcome) -> int:
    return len(json.dumps(outcome.body, separators=(",", ":")).encode())


class Sandbox:
    def __init__(self, config: SandboxConfig) -> None:
        self.initial = config
        self.config = config  # replaced wholesale on runtime changes; readers need no lock
        self.faults = config.faults
        self.cond = threading.Condition(threading.Lock())
        self.activity = Activity()
        self.stop_event = threading.Event()
        self.keys = KeyRing()
        self.files = FileStore()
        self.fetcher = httpx.Client(follow_redirects=True)  # input images; loopback allowed
        self.jobs: dict[str, Job] = {}
        self.rejected: list[dict[str, Any]] = []
        self.seq = 0
        self.generation = 0
        self.lifecycle = Lifecycle(self)
        self.deliverer = Deliverer(self, config.delivery_workers)

    def start(self) -> None:
        self.lifecycle.start()
        self.deliverer.start()

    def stop(self) -> None:
        self.stop_event.set()
        self.activity.close()
        self.lifecycle.stop()
        self.deliverer.stop()
        self.fetcher.close()

    # -- submit ---------------------------------------------------------------------

    def submit(self, request: SubmitRequest) -> Accepted | Rejected:
        with self.cond:
            self.seq += 1
            seq, faults, config = self.seq, self.faults, self.config
        decision = decide_submit_faults(faults, config.seed, seq)
        if decision.rejection == "submit_5xx":
            return self._reject(seq, Rejected(faults.submit_5xx_status, "submit_5xx"))
        if decision.rejection == "submit_429":
            return self._reject(seq, Rejected(429, "submit_429", retry_after_s=faults.retry_after_s))
        inline = request.run_inline or "webhook_before_response" in decision.applied
        job = self._new_job(request, seq, faults, decision)
        tokens = 2 if inline else 1  # an inline job holds a second token until its webhook went out
        self.activity.begin(tokens)
        with self.cond:
            limit = request.max_queue_length
            if limit is not None and self.lifecycle.waiting_for(job.endpoint_id) >= limit:
                self.activity.end(tokens)
                detail = f"Queue is full: fal_max_queue_length={limit}"
                return self._reject_locked(seq, Rejected(429, "queue_full", detail=detail))
            job.generation = self.generation
            self.jobs[job.request_id] = job
            position = 0 if inline else self.lifecycle.enqueue(job)
        if inline:
            try:
                self.lifecycle.run_inline(job)
            finally:
                self.activity.end()
        return Accepted(
            job,
            position,
            response_lost=job.submit_response_lost,
            response_delay_s=decision.params.get("submit_delay_s", 0.0),
        )

    def _new_job(self, request: SubmitRequest, seq: int, faults: Faults, decision: SubmitFaults) -> Job:
        return Job(
            request_id=str(uuid.uuid4()),
            seq=seq,
            generation=-1,  # set when the job is registered
            endpoint_id=request.endpoint.endpoint_id,
            app_id=request.endpoint.app_id,
            input=request.payload,
            webhook_url=request.webhook_url,
            base_url=request.base_url,
            headers_seen=request.headers_seen,
            query_seen=request.query_seen,
            priority=request.priority,
            start_timeout_s=request.start_timeout_s,
            faults=faults,
            applied_faults=list(decision.applied),
            fault_params=dict(decision.params),
            submitted_at=time.time(),
            submit_response_lost="submit_response_lost" in decision.applied,
        )

    def _reject(self, seq: int, rejection: Rejected) -> Rejected:
        with self.cond:
            return self._reject_locked(seq, rejection)

    def _reject_locked(self, seq: int, rejection: Rejected) -> Rejected:
        self.rejected.append(
            {"seq": seq, "at": time.time(), "http_status": rejection.status, "reason": rejection.reason}
        )
        return rejection

    # -- queue API reads ------------------------------------------------------------

    def find(self, app_path: str, request_id: str) -> Job | None:
        """The job behind a status/result/cancel URL, or None (unknown, wrong app, expired)."""
        job = self.jobs.get(request_id)
        config = self.config
        if job is None:
            return None
        if app_path != job.app_id and not (config.accept_full_path_urls and app_path == job.endpoint_id):
            return None
        return None if job.expired(time.time(), config) else job

    def status_view(self, job: Job, base_url: str, with_logs: bool) -> dict[str, Any]:
        with self.cond:
            position = self.lifecycle.position(job) if job.queue_status == IN_QUEUE else None
            return job.status_view(base_url, position, with_logs)

    def cancel(self, job: Job) -> str:
        with self.cond:
            if job.queue_status == COMPLETED:
                return "ALREADY_COMPLETED"
            if job.cancel_requested_at is None:
                job.cancel_requested_at = time.time()
            withdrawn = job.queue_status == IN_QUEUE and self.lifecycle.withdraw(job)
        if withdrawn:
            self.complete(job, CANCELLED)
        return "CANCELLATION_REQUESTED"

    # -- completion and webhooks ----------------------------------------------------

    def complete(
        self, job: Job, outcome: ModelOutcome, deliver_inline: bool = False, free_runner: bool = False
    ) -> None:
        """Make the job final and start its webhook; releases the job's activity token."""
        try:
            size = body_size(outcome)  # measured before taking the lock: results may be large
            with self.cond:
                if free_runner:
                    self.lifecycle.runner_finished()
                task, delay = self._settle(job, outcome, size)
            if task is not None:
                if deliver_inline:
                    self.deliverer.deliver_now(task)
                else:
                    self.deliverer.schedule(task, delay)
        finally:
            self.activity.end()

    def complete_locked(self, job: Job, outcome: ModelOutcome) -> None:
        """`complete` for callers already holding `cond` (rare paths only)."""
        try:
            task, delay = self._settle(job, outcome, body_size(outcome))
            if task is not None:
                self.deliverer.schedule(task, delay)
        finally:
            self.activity.end()

    def _settle(self, job: Job, outcome: ModelOutcome, size: int) -> tuple[DeliveryTask | None, float]:
        if job.queue_status == COMPLETED:
            return None, 0.0
        now = time.time()
        if job.cancel_requested_at is not None:
            outcome, size = CANCELLED, body_size(CANCELLED)
        job.result = outcome
        job.result_bytes = size
        job.outcome = "CANCELLED" if outcome is CANCELLED else ("OK" if outcome.ok else "ERROR")
        job.queue_status = COMPLETED
        job.completed_at = now
        job.logs.append(
            log_entry(
                f"Finished with HTTP {outcome.http_status}", now, level="INFO" if outcome.ok else "ERROR"
            )
        )
        if job.generation != self.generation or not job.webhook_url:
            return None, 0.0
        if job.outcome == "CANCELLED" and not self.config.webhook_on_cancel:
            job.webhook_state = "skipped"
            return None, 0.0
        # drop_large_callbacks is drawn only with large_result, and a padded result is large.
        if job.has_fault("drop") or (job.has_fault("drop_large_callbacks") and size >= LARGE_RESULT_BYTES):
            job.webhook_state = "dropped"
            return None, 0.0
        job.webhook_state = "pending"
        body = json.dumps(webhook_body(job, job.has_fault("payload_error")), separators=(",", ":"))
        delay = job.fault_params.get("delay_s", 0.0) + job.fault_params.get("reorder_delay_s", 0.0)
        return DeliveryTask(job, job.generation, job.webhook_url, body.encode("utf-8")), delay

    def record_delivery(
        self, task: DeliveryTask, record: dict[str, Any], delivered: bool
    ) -> list[tuple[DeliveryTask, float]]:
        """Log an attempt and say what to send next: a retry, duplicate copies or nothing."""
        job, config = task.job, self.config
        with self.cond:
            job.deliveries.append(record)
            if task.generation != self.generation or task.kind != "original":
                return []
            if delivered:
                job.webhook_state = "delivered"
                if not job.has_fault("duplicate"):
                    return []
                copies = job.fault_params.get("duplicate_copies", 1)
                spacing = config.duplicate_spacing_s
                return [
                    (DeliveryTask(job, task.generation, task.url, task.body, "duplicate", n), spacing * n)
                    for n in range(1, int(copies) + 1)
                ]
            delay = backoff_delay(config.delivery_backoff_s, task.attempt)
            # fal stops redelivering once the stored result is gone (docs/fal-protocol.md, "Delivery").
            if task.attempt < config.delivery_attempts and not job.expired(time.time() + delay, config):
                return [(task.next_attempt(), delay)]
            job.webhook_state = "failed"
            return []

    # -- admin ----------------------------------------------------------------------

    def reset(self) -> None:
        with self.cond:
            self.generation += 1
            drained = self.lifecycle.drain()
            self.jobs.clear()
            self.rejected.clear()
            self.seq = 0
            self.config = self.initial
            self.faults = self.initial.faults
        self.activity.end(drained)
        self.deliverer.clear()
        self.files.clear()
        self.lifecycle.resize()

    def update_config(self, changes: dict[str, Any]) -> SandboxConfig:
        with self.cond:
            self.config = self.config.updated(changes)
        self.lifecycle.resize()
        return self.config

    def update_faults(self, changes: dict[str, Any]) -> Faults:
        with self.cond:
            self.faults = self.faults.updated(changes)
            return self.faults

    def ground_truth(self, request_id: str | None = None) -> Any:
        with self.cond:
            now, config = time.time(), self.config
            if request_id is not None:
                job = self.jobs.get(request_id)
                return job.ground_truth(now, config) if job else None
            return {
                "requests": [job.ground_truth(now, config) for job in self.jobs.values()],
                "rejected_submits": [dict(item) for item in self.rejected],
            }

    def summary(self) -> dict[str, Any]:
        with self.cond:
            counts = self.lifecycle.counts()
            return {
                "requests": len(self.jobs),
                "rejected_submits": len(self.rejected),
                **counts,
                "deliveries_scheduled": self.deliverer.pending(),
                "busy": self.activity.busy,
                "idle_waiters": self.activity.waiters,
            }
