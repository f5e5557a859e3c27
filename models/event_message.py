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

from sqlalchemy import Row, bindparam, inspect, select
from sqlalchemy.orm import Mapper, Session

from falbridge.models.tables import Job, JobEvent, ResultFile, StoredFile

# The job's columns no message shows: its input, and the worker's own bookkeeping.
_LEFT_OUT = frozenset(
    {"input", "touched_at", "submit_lease_until", "submit_retry_at", "compacted_at", "event_seq"}
)


def _columns(mapper: Mapper[Any], keys: frozenset[str] | None = None, prefix: str = "") -> list[Any]:
    """The table's columns labelled by attribute name (`meta`, not `metadata`): Core
    columns, so that executing a statement skips the ORM's compile step."""
    return [a.columns[0].label(prefix + a.key) for a in mapper.column_attrs if keys is None or a.key in keys]


_JOB = inspect(Job)
_JOB_COLUMNS = [c for c in _columns(_JOB) if c.name not in _LEFT_OUT]
_EVENT_KEYS = frozenset({"id", "seq", "at", "source", "from_status", "to_status", "detail"})
_events, _files, _stored = JobEvent.__table__.c, ResultFile.__table__.c, StoredFile.__table__.c

# Built once, executed with parameters: constructing a statement (and its cache key) cost
# several times its execution.
_EVENT_OF_JOB = (
    select(*_JOB_COLUMNS, *_columns(inspect(JobEvent), _EVENT_KEYS, prefix="ev_"))
    .join_from(JobEvent.__table__, Job.__table__, _events.job_id == Job.__table__.c.id)
    .where(_events.id == bindparam("event_id"))
)
_FILES = (
    select(*_columns(inspect(ResultFile))).where(_files.job_id == bindparam("job_id")).order_by(_files.id)
)
_STORED = select(
    *_columns(
        inspect(StoredFile),
        frozenset(
            {"path", "status", "width", "height", "reason", "sha256", "size", "sniffed_type", "stored_at"}
        ),
    )
).where(_stored.job_id == bindparam("job_id"))
_HISTORY = (
    select(*_columns(inspect(JobEvent), _EVENT_KEYS - {"id", "seq"}))
    .where(_events.job_id == bindparam("job_id"), _events.seq <= bindparam("seq"))
    .order_by(_events.id)
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
    row = session.execute(_EVENT_OF_JOB, {"event_id": event_id}).first()
    if row is None:
        return None
    event = EventView(
        row.ev_id, row.ev_seq, row.ev_at, row.ev_source, row.ev_from_status, row.ev_to_status, row.ev_detail
    )
    return EventOfJob(event, row)


def parts_up_to(session: Session, job_id: uuid.UUID, seq: int) -> JobParts:
    files = session.execute(_FILES, {"job_id": job_id}).all()
    stored: dict[str, Row[Any]] = {}
    if files:  # nothing to join a copy to otherwise
        stored = {row.path: row for row in session.execute(_STORED, {"job_id": job_id})}
    events = session.execute(_HISTORY, {"job_id": job_id, "seq": seq}).all()
    return JobParts([(f, stored.get(f.path)) for f in files], list(events))
