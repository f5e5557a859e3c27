"""What an outgoing event's message is made of, read with Core: the event and its job's
columns in one statement (never the job's `input`, which the message leaves out and
which can be megabytes), then, for a message with a body, the job's files with their
stored copies and its history up to the event.

Core rows, not ORM objects: building a message runs once per delivery attempt, and
loading the whole job with its relations was most of the attempt's CPU. And read for a
wave of deliveries at once (the events in one statement, the files, stored copies and
histories in one each): a statement per delivery was most of what remained.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
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
# several times its execution. Each reads for a whole wave of deliveries (expanding ids:
# compiled once, rendered for each number of ids), so a wave costs the same statements
# whatever its size.
_EVENTS_OF_JOBS = (
    select(*_JOB_COLUMNS, *_columns(inspect(JobEvent), _EVENT_KEYS, prefix="ev_"))
    .join_from(JobEvent.__table__, Job.__table__, _events.job_id == Job.__table__.c.id)
    .where(_events.id.in_(bindparam("event_ids", expanding=True)))
)
_FILES = (
    select(*_columns(inspect(ResultFile)))
    .where(_files.job_id.in_(bindparam("job_ids", expanding=True)))
    .order_by(_files.id)
)
_STORED = select(
    *_columns(
        inspect(StoredFile),
        frozenset(
            {
                "job_id",
                "path",
                "status",
                "width",
                "height",
                "reason",
                "sha256",
                "size",
                "sniffed_type",
                "stored_at",
            }
        ),
    )
).where(_stored.job_id.in_(bindparam("job_ids", expanding=True)))
# Up to the highest seq any of the wave's events needs; each event's own cut is made in
# Python (JobsParts.up_to).
_HISTORY = (
    select(*_columns(inspect(JobEvent), _EVENT_KEYS - {"id"} | {"job_id"}))
    .where(_events.job_id.in_(bindparam("job_ids", expanding=True)), _events.seq <= bindparam("seq"))
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


@dataclass(frozen=True)
class JobsParts:
    """Several jobs' files (each with its stored copy) and histories, read together."""

    files: dict[uuid.UUID, list[tuple[Row[Any], Row[Any] | None]]]
    events: dict[uuid.UUID, list[Row[Any]]]

    def up_to(self, job_id: uuid.UUID, seq: int) -> JobParts:
        """One job's parts as a message of its event `seq` shows them."""
        history = [e for e in self.events.get(job_id, ()) if e.seq <= seq]
        return JobParts(list(self.files.get(job_id, ())), history)


def events_of_jobs(session: Session, event_ids: Iterable[int]) -> dict[int, EventOfJob]:
    """The events found, each with its job's columns, by event id: one missing is gone,
    or its job is."""
    wanted = sorted(set(event_ids))
    if not wanted:
        return {}
    found: dict[int, EventOfJob] = {}
    for row in session.execute(_EVENTS_OF_JOBS, {"event_ids": wanted}):
        event = EventView(
            row.ev_id,
            row.ev_seq,
            row.ev_at,
            row.ev_source,
            row.ev_from_status,
            row.ev_to_status,
            row.ev_detail,
        )
        found[event.id] = EventOfJob(event, row)
    return found


def event_of_job(session: Session, event_id: int) -> EventOfJob | None:
    """None: the event, or its job, is gone."""
    return events_of_jobs(session, [event_id]).get(event_id)


def parts_of_jobs(session: Session, up_to: Mapping[uuid.UUID, int]) -> JobsParts:
    """The files and histories of the jobs of `up_to` (job id: the highest seq wanted), in
    three statements however many jobs (two when none has a file)."""
    if not up_to:
        return JobsParts({}, {})
    job_ids = sorted(up_to)
    files: dict[uuid.UUID, list[Row[Any]]] = {}
    for row in session.execute(_FILES, {"job_ids": job_ids}):
        files.setdefault(row.job_id, []).append(row)
    stored: dict[tuple[uuid.UUID, str], Row[Any]] = {}
    if files:  # nothing to join a copy to otherwise
        with_files = sorted(files)
        stored = {(row.job_id, row.path): row for row in session.execute(_STORED, {"job_ids": with_files})}
    events: dict[uuid.UUID, list[Row[Any]]] = {}
    for row in session.execute(_HISTORY, {"job_ids": job_ids, "seq": max(up_to.values())}):
        if row.seq <= up_to[row.job_id]:
            events.setdefault(row.job_id, []).append(row)
    paired = {job_id: [(f, stored.get((job_id, f.path))) for f in rows] for job_id, rows in files.items()}
    return JobsParts(paired, events)


def parts_up_to(session: Session, job_id: uuid.UUID, seq: int) -> JobParts:
    return parts_of_jobs(session, {job_id: seq}).up_to(job_id, seq)
