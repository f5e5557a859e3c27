"""One accepted request: its state, its queue-API views and its ground-truth record.

Jobs are mutated only under the sandbox's state lock; the view builders below are called
with that lock held and copy what they return, so JSON encoding can happen outside it.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Any

from falbridge.sandbox.config import Faults, SandboxConfig
from falbridge.sandbox.fake_models import ModelOutcome
from falbridge.sandbox.routes import queue_urls

IN_QUEUE, IN_PROGRESS, COMPLETED = "IN_QUEUE", "IN_PROGRESS", "COMPLETED"


def log_entry(message: str, at: float, level: str = "INFO") -> dict[str, str]:
    stamp = datetime.datetime.fromtimestamp(at, datetime.UTC).isoformat(timespec="milliseconds")
    return {"message": message, "timestamp": stamp.replace("+00:00", "Z"), "level": level, "source": "USER"}


@dataclass(eq=False)
class Job:
    request_id: str
    seq: int
    generation: int
    endpoint_id: str
    app_id: str
    input: dict[str, Any]
    webhook_url: str | None
    base_url: str
    headers_seen: dict[str, str]
    query_seen: dict[str, str]
    priority: str
    start_timeout_s: float | None
    faults: Faults  # snapshot at submit, so later fault changes don't touch this job
    applied_faults: list[str]
    fault_params: dict[str, float]
    submitted_at: float
    submit_response_lost: bool = False
    queue_status: str = IN_QUEUE
    outcome: str | None = None  # "OK", "ERROR", "CANCELLED"
    result: ModelOutcome | None = None
    started_at: float | None = None
    completed_at: float | None = None
    cancel_requested_at: float | None = None
    logs: list[dict[str, str]] = field(default_factory=list)
    deliveries: list[dict[str, Any]] = field(default_factory=list)
    webhook_state: str = "none"  # none | dropped | pending | delivered | failed
    queue_key: tuple[int, int] = (0, 0)
    result_bytes: int = 0  # size of the stored JSON result, which sets its retention

    def has_fault(self, name: str) -> bool:
        return name in self.applied_faults

    def expired(self, now: float, config: SandboxConfig) -> bool:
        if self.completed_at is None:
            return False
        return now > self.completed_at + config.retention_for(self.result_bytes)

    def inference_time(self) -> float | None:
        if self.started_at is None or self.completed_at is None:
            return None
        return round(self.completed_at - self.started_at, 6)

    def status_view(self, base_url: str, position: int | None, with_logs: bool) -> dict[str, Any]:
        body: dict[str, Any] = {"status": self.queue_status, "request_id": self.request_id}
        body.update(queue_urls(base_url, self.app_id, self.request_id))
        if self.queue_status == IN_QUEUE:
            body["queue_position"] = position
            return body
        body["logs"] = list(self.logs) if with_logs else None
        if self.queue_status == COMPLETED:
            elapsed = self.inference_time()
            body["metrics"] = {"inference_time": elapsed} if elapsed is not None else {}
            if self.result is not None and not self.result.ok:
                body["error"] = self.result.error_message
                body["error_type"] = self.result.error_type
        return body

    def ground_truth(self, now: float, config: SandboxConfig) -> dict[str, Any]:
        result = self.result
        return {
            "request_id": self.request_id,
            "seq": self.seq,
            "endpoint_id": self.endpoint_id,
            "app_id": self.app_id,
            "input": self.input,
            "webhook_url": self.webhook_url,
            "headers_seen": dict(self.headers_seen),
            "query_seen": dict(self.query_seen),
            "priority": self.priority,
            "start_timeout_s": self.start_timeout_s,
            "queue_status": self.queue_status,
            "outcome": self.outcome,
            "http_status": result.http_status if result else None,
            "output": result.body if result and result.ok else None,
            "error_body": result.body if result and not result.ok else None,
            "error_type": result.error_type if result else None,
            "faults": list(self.applied_faults),
            "fault_params": dict(self.fault_params),
            "submit_response_lost": self.submit_response_lost,
            "submitted_at": self.submitted_at,
            "started_at": self.started_at,
            "completed_at": self.completed_at,
            "cancel_requested_at": self.cancel_requested_at,
            "result_bytes": self.result_bytes,
            "expired": self.expired(now, config),
            "expires_at": (
                self.completed_at + config.retention_for(self.result_bytes)
                if self.completed_at is not None
                else None
            ),
            "webhook_state": self.webhook_state,
            "deliveries": [dict(attempt) for attempt in self.deliveries],
        }


def webhook_body(job: Job, payload_error: bool) -> dict[str, Any]:
    """The JSON fal POSTs to `fal_webhook` once the job is final (§2.2)."""
    result = job.result
    assert result is not None
    body: dict[str, Any] = {"request_id": job.request_id, "gateway_request_id": job.request_id}
    if result.ok:
        body["status"] = "OK"
    else:
        body["status"] = "ERROR"
        body["error"] = f"Invalid status code: {result.http_status}"
    if payload_error:
        body["payload"] = None
        body["payload_error"] = (
            "Payload could not be included in the webhook (injected); fetch it from the queue"
        )
    else:
        body["payload"] = result.body
    return body
