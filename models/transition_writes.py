"""What a transition writes besides its job's row (its event, the event's outbox
deliveries, a completion's result files), written with Core, not the ORM's unit of work:
the unit of work's flush of these tables was a tenth of the worker's CPU per job and of
the API's per submit (bench/pipeline.py's profile).

By default they are written when they are made, as a flush right after would have
written them, so whatever the transaction reads next sees them. A batch that makes many
and reads none of them back (the inbox drain, the submit batch's answers, a storing
wave) holds them with `held(session)` and writes them all as it leaves: one multi-row
INSERT a table, whatever the batch's size (on PostgreSQL; SQLite cannot tell which id
each row of one INSERT got, so SQLAlchemy sends event and delivery rows one by one, as
the ORM did).

An event comes back as a JobEvent with its id, detached (never added to the session): the
API's answer for a new job shows it, and a cascade from its job finds it already written.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import Table, insert
from sqlalchemy.orm import Session, make_transient_to_detached
from sqlalchemy.orm.attributes import set_committed_value

from falbridge.models.db import unset_columns
from falbridge.models.outbox import dispatch_after_commit
from falbridge.models.tables import EventDelivery, JobEvent, ResultFile

_HELD = "falbridge.transition_writes.held"  # session.info key: (transaction, Held)

_events = cast(Table, JobEvent.__table__)
_deliveries = cast(Table, EventDelivery.__table__)
# Built once; each returns the new ids in the order of its rows.
_INSERT_EVENTS = insert(_events).returning(_events.c.id, sort_by_parameter_order=True)
_INSERT_DELIVERIES = insert(_deliveries).returning(_deliveries.c.id, sort_by_parameter_order=True)
_result_files = cast(Table, ResultFile.__table__)
_INSERT_RESULT_FILES = insert(_result_files)
_RESULT_FILE_UNSET = unset_columns(_result_files, "job_id", "path", "url")
_EVENT_KEYS = ("job_id", "seq", "at", "source", "from_status", "to_status", "detail")

# An event and its deliveries' rows (every column but event_id and id).
Pending = tuple[JobEvent, list[dict[str, Any]]]


@dataclass
class Held:
    events: list[Pending] = field(default_factory=list)
    result_files: list[dict[str, Any]] = field(default_factory=list)


def add_event(session: Session, event: JobEvent, deliveries: list[dict[str, Any]]) -> None:
    """Write the event and its deliveries now, or hold them for the batch."""
    held_here = _held_here(session)
    if held_here is not None:
        held_here.events.append((event, deliveries))
    else:
        _write_events(session, [(event, deliveries)])


def add_result_files(session: Session, rows: list[dict[str, Any]]) -> None:
    """Write a completed job's result files (ResultFile's columns but the id; those left
    out NULL) now, or hold them for the batch."""
    full = [{**_RESULT_FILE_UNSET, **row} for row in rows]
    held_here = _held_here(session)
    if held_here is not None:
        held_here.result_files += full
    elif full:
        session.execute(_INSERT_RESULT_FILES, full)


@contextlib.contextmanager
def held(session: Session) -> Iterator[None]:
    """What is made inside is written as it ends, together (unless it raises: the
    transaction is then rolled back anyway). Nothing inside may read it back."""
    holding = Held()
    session.info[_HELD] = (session.get_transaction(), holding)
    try:
        yield
    finally:
        session.info.pop(_HELD, None)
    if holding.events:
        _write_events(session, holding.events)
    if holding.result_files:
        session.execute(_INSERT_RESULT_FILES, holding.result_files)


def _write_events(session: Session, pending: list[Pending]) -> None:
    """The events' rows and then their deliveries' (dispatched after the commit)."""
    event_rows = [{key: getattr(event, key) for key in _EVENT_KEYS} for event, _ in pending]
    event_ids = session.execute(_INSERT_EVENTS, event_rows).scalars().all()
    delivery_rows: list[dict[str, Any]] = []
    for (event, deliveries), event_id in zip(pending, event_ids, strict=True):
        set_committed_value(event, "id", event_id)
        make_transient_to_detached(event)
        delivery_rows += [{**row, "event_id": event_id} for row in deliveries]
    if delivery_rows:
        delivery_ids = session.execute(_INSERT_DELIVERIES, delivery_rows).scalars().all()
        dispatch_after_commit(session, delivery_ids)


def _held_here(session: Session) -> Held | None:
    found = session.info.get(_HELD)
    if found is None or found[0] is not session.get_transaction():
        return None
    holding: Held = found[1]
    return holding
