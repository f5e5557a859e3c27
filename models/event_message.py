"""What an outgoing event's message is made of, read with Core: the event and its job's
columns in one statement (never the job's `input`, which the message leaves out and
which can be megabytes), then, for a message with a body, the job's files with their
stored copies and its history up to the event.

Core rows, not ORM objects: building a message runs once per delivery attempt, and
loading the whole job with its relations was most of the attempt's CPU.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Row, inspect, select
from sqlalchemy.orm import Session

from falbridge.models.tables import Job, JobEvent, ResultFile, StoredFile

# The job's columns no message shows: its input, and the worker's own bookkeeping.
_LEFT_OUT = frozenset(
    {"input", "touched_at", "submit_lease_until", "submit_retry_at", "compacted_at", "event_seq"}
)
_JOB = tuple(getattr(Job, a.key) for a in inspect(Job).column_attrs if a.key not in _LEFT_OUT)
# Labelled apart from the job's columns of the same names (id, event_seq).
_EVENT: tuple[Any, ...] = (
    JobEvent.id.label("ev_id"),
    JobEvent.seq.label("ev_seq"),
    JobEvent.at.label("ev_at"),
    JobEvent.source.label("ev_source"),
    JobEvent.from_status.label("ev_from_status"),
    JobEvent.to_status.label("ev_to_status"),
    JobEvent.detail.label("ev_detail"),
)
_HISTORY = (JobEvent.at, JobEvent.source, JobEvent.from_status, JobEvent.to_status, JobEvent.detail)
_FILE = tuple(getattr(ResultFile, a.key) for a in inspect(ResultFile).column_attrs)
_STORED = tuple(
    getattr(StoredFile, key)
    for key in ("path", "status", "width", "height", "reason", "sha256", "size", "sniffed_type", "stored_at")
)


@dataclass(frozen=True)
class EventView:
    """A JobEvent's fields, as the message shows them."""

    id: int
    seq: int
    at: Any
    source: str
    from_status: str | None
    to_status: str
    detail: Any


@dataclass(frozen=True)
class EventOfJob:
    event: EventView
    job: Row[Any]  # the job's columns but _LEFT_OUT, by attribute name (`meta`, not `metadata`)


@dataclass(frozen=True)
class JobParts:
    """A job's files, each with its stored copy (None: not recorded), and its history up
    to one event, in order."""

    files: list[tuple[Row[Any], Row[Any] | None]]
    events: list[Row[Any]]


def event_of_job(session: Session, event_id: int) -> EventOfJob | None:
    """None: the event, or its job, is gone."""
    row = session.execute(
        select(*_JOB, *_EVENT)
        .join_from(JobEvent, Job, JobEvent.job_id == Job.id)
        .where(JobEvent.id == event_id)
    ).first()
    if row is None:
        return None
    event = EventView(
        row.ev_id, row.ev_seq, row.ev_at, row.ev_source, row.ev_from_status, row.ev_to_status, row.ev_detail
    )
    return EventOfJob(event, row)


def parts_up_to(session: Session, job_id: uuid.UUID, seq: int) -> JobParts:
    files = session.execute(select(*_FILE).where(ResultFile.job_id == job_id).order_by(ResultFile.id)).all()
    stored: dict[str, Row[Any]] = {}
    if files:  # nothing to join a copy to otherwise
        rows = session.execute(select(*_STORED).where(StoredFile.job_id == job_id)).all()
        stored = {row.path: row for row in rows}
    events = session.execute(
        select(*_HISTORY).where(JobEvent.job_id == job_id, JobEvent.seq <= seq).order_by(JobEvent.id)
    ).all()
    return JobParts([(f, stored.get(f.path)) for f in files], list(events))
