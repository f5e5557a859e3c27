"""What an outgoing webhook says: `{"type", "timestamp", "data"}`.

`data` is the job as GET /api/jobs/<id> shows it when the attempt is made, without its
`input` (inputs can be megabytes), with the event's `sequence` (per job, rising: a
subscriber orders a job's events by it) and `event`, the transition this event is. A
terminal event's job never changes again, so its body is the same on every attempt.
"""

from __future__ import annotations

import json
from typing import Any

from falbridge.models.outbox import type_of
from falbridge.models.serialize import event_dict, iso, job_detail
from falbridge.models.tables import Job, JobEvent


def message_id(event_id: int) -> str:
    """The event's id as subscribers see it (webhook-id): stable across retries."""
    return f"evt_{event_id}"


def body(event: JobEvent, job: Job) -> bytes:
    """`job` with its files and events loaded."""
    data: dict[str, Any] = {key: value for key, value in job_detail(job).items() if key != "input"}
    data["events"] = [event_dict(e) for e in job.events if e.seq <= event.seq]
    data["sequence"] = event.seq
    data["event"] = {"id": message_id(event.id), **event_dict(event)}
    envelope = {"type": type_of(event), "timestamp": iso(event.at), "data": data}
    return json.dumps(envelope, separators=(",", ":"), ensure_ascii=False).encode()
