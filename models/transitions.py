"""Each job transition, handed after its commit to whoever watches them (the worker's
metrics and log lines, falbridge.worker.observe): a transition a rollback undid was never
made, so it is neither counted nor logged."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from falbridge.models.after_commit import AfterCommit


@dataclass(frozen=True)
class Transition:
    job_id: uuid.UUID
    endpoint_id: str
    request_id: str | None
    from_status: str | None
    to_status: str
    source: str
    created_at: datetime | None
    at: datetime


committed = AfterCommit[Transition, Transition]("falbridge_transitions", lambda t: t)
