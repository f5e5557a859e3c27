"""Writing a job's events and their outbox deliveries with Core, not the ORM's unit of
work: the unit of work's flush of these two tables was a tenth of the worker's CPU per
job and of the API's per submit (bench/pipeline.py's profile).

By default an event is written when it is made: its row, then its deliveries' rows, two
statements at most, as a flush right after it would have written them, so whatever the
transaction reads next sees them. A batch that makes many events and reads none of them
back (the inbox drain, the submit batch's answers) holds them with `held(session)` and
writes all of them as it leaves: one multi-row INSERT for the events, one for the
deliveries, whatever the batch's size (on PostgreSQL; SQLite cannot tell which id each
row of one INSERT got, so SQLAlchemy sends its rows one by one, as the ORM did).

An event comes back as a JobEvent with its id, detached (never added to the session): the
API's answer for a new job shows it, and a cascade from its job finds it already written.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, cast

from sqlalchemy import Table, insert
from sqlalchemy.orm import Session, make_transient_to_detached
from sqlalchemy.orm.attributes import set_committed_value

from falbridge.models.outbox import dispatch_after_commit
from falbridge.models.tables import EventDelivery, JobEvent

_HELD = "falbridge.event_writes.held"  # session.info key: (transaction, held events)

_events = cast(Table, JobEvent.__table__)
_deliveries = cast(Table, EventDelivery.__table__)
# Built once; each returns the new ids in the order of its rows.
_INSERT_EVENTS = insert(_events).returning(_events.c.id, sort_by_parameter_order=True)
_INSERT_DELIVERIES = insert(_deliveries).returning(_deliveries.c.id, sort_by_parameter_order=True)
_EVENT_KEYS = ("job_id", "seq", "at", "source", "from_status", "to_status", "detail")

# An event and its deliveries' rows (every column but event_id and id).
Pending = tuple[JobEvent, list[dict[str, Any]]]


def add(session: Session, event: JobEvent, deliveries: list[dict[str, Any]]) -> list[int] | None:
    """Write the event and its deliveries now (their ids), or hold them for the batch
    (None)."""
    held = _held_here(session)
    if held is not None:
        held.append((event, deliveries))
        return None
    return write(session, [(event, deliveries)])


@contextlib.contextmanager
def held(session: Session) -> Iterator[None]:
    """The events made inside are written as it ends, together (unless it raises: the
    transaction is then rolled back anyway). Nothing inside may read them back."""
    pending: list[Pending] = []
    session.info[_HELD] = (session.get_transaction(), pending)
    try:
        yield
    except BaseException:
        session.info.pop(_HELD, None)
        raise
    session.info.pop(_HELD, None)
    if pending:
        write(session, pending)


def write(session: Session, pending: list[Pending]) -> list[int]:
    """The events' rows and then their deliveries' (dispatched after the commit); returns
    the deliveries' ids."""
    event_rows = [{key: getattr(event, key) for key in _EVENT_KEYS} for event, _ in pending]
    event_ids = session.execute(_INSERT_EVENTS, event_rows).scalars().all()
    delivery_rows: list[dict[str, Any]] = []
    for (event, deliveries), event_id in zip(pending, event_ids, strict=True):
        set_committed_value(event, "id", event_id)
        make_transient_to_detached(event)
        delivery_rows += [{**row, "event_id": event_id} for row in deliveries]
    if not delivery_rows:
        return []
    delivery_ids = list(session.execute(_INSERT_DELIVERIES, delivery_rows).scalars().all())
    dispatch_after_commit(session, delivery_ids)
    return delivery_ids


def _held_here(session: Session) -> list[Pending] | None:
    found = session.info.get(_HELD)
    if found is None or found[0] is not session.get_transaction():
        return None
    pending: list[Pending] = found[1]
    return pending
