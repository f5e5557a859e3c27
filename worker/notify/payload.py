"""What an outgoing webhook says: `{"type", "timestamp", "data"}`.

`data` is the job as GET /api/jobs/<id> shows it when the attempt is made, without its
`input` (inputs can be megabytes), with the event's `sequence` (per job, rising: a
subscriber orders a job's events by it) and `event`, the transition this event is. A
terminal event's job never changes again, so its body is the same on every attempt.

Read with Core (falbridge.models.event_message), never the ORM job: one message per
delivery attempt, and a wave's messages read together.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy.orm import Session

from falbridge.models.event_message import EventOfJob, JobParts, parts_up_to
from falbridge.models.outbox import type_of
from falbridge.models.serialize import event_dict, file_dict, iso, job_outputs, job_summary


def message_id(event_id: int) -> str:
    """The event's id as subscribers see it (webhook-id): stable across retries."""
    return f"evt_{event_id}"


def body(session: Session, found: EventOfJob) -> bytes:
    """The message of one event, its job's parts read now."""
    return body_of(found, parts_up_to(session, found.job.id, found.event.seq))


def body_of(found: EventOfJob, parts: JobParts) -> bytes:
    """The message of one event from its job's parts as read already (a wave reads its
    jobs' parts together: falbridge.models.event_message.parts_of_jobs)."""
    event, job = found.event, found.job
    files = [file_dict(f, stored) for f, stored in parts.files]
    data: dict[str, Any] = {
        **job_summary(job),
        **job_outputs(job, files, [event_dict(e) for e in parts.events]),
    }
    data["sequence"] = event.seq
    data["event"] = {"id": message_id(event.id), **event_dict(event)}
    envelope = {"type": type_of(event), "timestamp": iso(event.at), "data": data}
    return json.dumps(envelope, separators=(",", ":"), ensure_ascii=False).encode()
