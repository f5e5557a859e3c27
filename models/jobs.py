"""Job queries: idempotent creation, lookups under lock, state transitions, result files.
(Listing the history is falbridge.models.listing.)"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Iterable
from typing import Any, cast

from sqlalchemy import Table, bindparam, inspect, or_, select, update
from sqlalchemy.orm import Session, selectinload
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.sql.dml import ReturningUpdate
from sqlalchemy.sql.selectable import ExecutableReturnsRows

from falbridge.models import transition_writes
from falbridge.models.clock import db_now
from falbridge.models.db import insert_unless_taken
from falbridge.models.input_copies import reference
from falbridge.models.outbox import fan_out
from falbridge.models.states import EventSource, JobStatus, can_transition
from falbridge.models.tables import Job, JobEvent, utcnow
from falbridge.models.transitions import Transition, committed


def create_job(
    session: Session,
    endpoint_id: str,
    input: dict[str, Any],
    *,
    external_id: str | None = None,
    metadata: dict[str, Any] | None = None,
    callbacks: dict[str, str | None] | None = None,
    source: EventSource = EventSource.API,
    input_files: list[dict[str, Any]] | None = None,
    options: dict[str, Any] | None = None,
) -> tuple[Job, bool]:
    """Insert a pending job; with an external_id already taken, return that job instead.

    The unique index decides, not a prior SELECT: `INSERT ... ON CONFLICT (external_id)
    DO NOTHING RETURNING`, so two callers racing with the same external_id both reach the
    INSERT, one wins, the other waits for its commit and reads the winner's row. One
    statement on the common path, no savepoint (the API's cost, bench/ profile).
    Either way the job comes back with `files` and `events` loaded, ready for `job_detail`.
    `input_files` (the input's files uploaded to fal storage: where, URL, sha256, size, and
    the key of falbridge's copy) are kept in the creation event's detail, and each digest
    is referenced in `job_inputs` (falbridge.models.input_copies). `options`: fal's submit
    options, checked already (falbridge.worker.fal.job_options); their priority is copied
    to a column of its own, which claims order by.
    """
    values = {
        "id": uuid.uuid4(),
        "endpoint_id": endpoint_id,
        "input": input,
        "external_id": external_id,
        "metadata": metadata,  # the column's name (Job.meta)
        "options": options or None,
        "priority": (options or {}).get("priority", "normal"),
        "status": JobStatus.PENDING.value,
        "event_seq": 1,
        **dict.fromkeys(_CALLBACK_KEYS),
        **(callbacks or {}),  # notify_url, on_complete, on_complete_queue
    }
    inserted = session.scalars(_insert_job_once(session.get_bind().dialect.name), values)
    job = cast(Job | None, inserted.one_or_none())
    if job is None:
        existing = session.scalar(
            select(Job)
            .where(Job.external_id == external_id)
            .options(selectinload(Job.files), selectinload(Job.events), selectinload(Job.stored_files))
        )
        if existing is None:  # the conflict was on something else: don't hide it
            raise RuntimeError(f"job insert for external_id {external_id!r} conflicted, yet no job holds it")
        return existing, False
    detail = {"input_files": input_files} if input_files else None
    if input_files:
        reference(session, job.id, input_files)  # their copies stay while the job does
    event = add_event(session, job, 1, None, JobStatus.PENDING, source, detail)
    # A new job has no files and exactly this event: no need to read them back.
    set_committed_value(job, "files", [])
    set_committed_value(job, "stored_files", [])
    set_committed_value(job, "events", [event])
    return job, True


# Always named, so every job runs the one compiled INSERT.
_CALLBACK_KEYS = ("notify_url", "on_complete", "on_complete_queue")


@functools.cache
def _insert_job_once(dialect: str) -> ExecutableReturnsRows:
    """Built once per dialect, run with the job's values as parameters. A Core INSERT read
    as Job rows: the ORM's own INSERT, given parameters, takes its bulk path, and a
    `.values()` of every column is traversed for its cache key at each run; both cost
    more than running the statement (bench/ profile)."""
    table = cast(Table, Job.__table__)
    inserted = (
        insert_unless_taken(dialect, table, table.c.external_id)
        .values(updated_at=db_now())  # the only SQL expression; the rest are parameters
        .returning(*table.c)
    )
    return select(Job).from_statement(inserted)


def get_job(session: Session, job_id: uuid.UUID | str, *, full: bool = False) -> Job | None:
    job_uuid = parse_uuid(job_id)
    if job_uuid is None:
        return None
    stmt = select(Job).where(Job.id == job_uuid)
    if full:
        stmt = stmt.options(selectinload(Job.files), selectinload(Job.events), selectinload(Job.stored_files))
    return session.scalar(stmt)


def lock_job(session: Session, job_id: uuid.UUID) -> Job | None:
    """Read a job holding its row lock (PostgreSQL) for the rest of the transaction.

    SQLite needs no row lock: every transaction there begins IMMEDIATE, so writers are
    already serialised.
    """
    return session.scalar(
        select(Job).where(Job.id == job_id).with_for_update().execution_options(populate_existing=True)
    )


def job_by_request_id(session: Session, request_id: str) -> Job | None:
    return session.scalar(select(Job).where(Job.request_id == request_id))


def lock_job_by_request_id(session: Session, request_id: str) -> Job | None:
    """`job_by_request_id` holding the row lock, as `lock_job` does: one statement."""
    return session.scalar(
        select(Job)
        .where(Job.request_id == request_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )


def lock_jobs(session: Session, request_ids: Iterable[str], job_ids: Iterable[uuid.UUID] = ()) -> list[Job]:
    """The jobs bound to these request ids and those with these ids, locked as `lock_job`
    locks one, in id order (one order for every locker of several jobs): one statement."""
    by_request, by_id = sorted(set(request_ids)), sorted(set(job_ids))
    if not by_request and not by_id:
        return []
    return list(
        session.scalars(
            select(Job)
            .where(or_(Job.request_id.in_(by_request), Job.id.in_(by_id)))
            .order_by(Job.id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    )


def transition(
    session: Session,
    job: Job,
    new: JobStatus,
    source: EventSource,
    detail: dict[str, Any] | None = None,
    **fields: Any,
) -> bool:
    """Move a locked job to `new` if the state machine allows it; record the event.

    Returns False (and changes nothing) for repeated, stale or out-of-order events.
    """
    current = JobStatus(job.status)
    if not can_transition(current, new):
        return False
    # The job's own unflushed changes (e.g. a webhook count) ride in the same UPDATE
    # instead of a flush of their own just before it: one write of the row, not two.
    # Read from the keys the ORM marked as set since the last flush, not by asking each
    # column's history (a quarter of a millisecond a transition, bench/ profile).
    state = inspect(job)
    pending = {key: getattr(job, key) for key in state.committed_state if key in _COLUMN_KEYS}
    values = dict(pending, **fields, status=new.value)
    if new.is_terminal and "completed_at" not in values:
        values["completed_at"] = utcnow()
    # Conditional on the status we read, so that even without a row lock a concurrent
    # writer cannot be overwritten: the loser's UPDATE matches no row (and so writes no
    # event: one event per transition). updated_at comes from the database's clock and
    # back by RETURNING: it orders the changes feed; event_seq numbers the job's events.
    names = tuple(sorted(values))
    params = {f"new_{name}": value for name, value in values.items()}
    with session.no_autoflush:
        stamped = session.execute(
            _transition_update(names), {"job_id": job.id, "from_status": current.value, **params}
        ).one_or_none()
    if stamped is None:
        return False
    for name, value in {**values, "updated_at": stamped.updated_at, "event_seq": stamped.event_seq}.items():
        # Reflect the UPDATE in the loaded object without making the ORM write it again.
        set_committed_value(job, name, value)
    add_event(session, job, stamped.event_seq, current, new, source, detail)
    return True


_COLUMN_KEYS = frozenset(attr.key for attr in inspect(Job).column_attrs)


@functools.cache
def _transition_update(names: tuple[str, ...]) -> ReturningUpdate[Any]:
    """transition()'s UPDATE for the columns `names` (attribute keys), built once and run
    with parameters: building it and its cache key for every transition cost more than
    running it (bench/ profile)."""
    columns = inspect(Job).columns
    table = cast(Table, Job.__table__)
    return (
        update(table)
        .where(table.c.id == bindparam("job_id"), table.c.status == bindparam("from_status"))
        .values({columns[name]: bindparam(f"new_{name}", type_=columns[name].type) for name in names})
        .values(updated_at=db_now(), event_seq=table.c.event_seq + 1)
        .returning(table.c.updated_at, table.c.event_seq)
    )


def add_event(
    session: Session,
    job: Job,
    seq: int,
    old: JobStatus | None,
    new: JobStatus,
    source: EventSource,
    detail: dict[str, Any] | None = None,
) -> JobEvent:
    event = JobEvent(
        job_id=job.id,
        seq=seq,
        from_status=old.value if old else None,
        to_status=new.value,
        source=source.value,
        detail=detail,
        at=utcnow(),
    )
    # The outbox: its deliveries, written with it in this same transaction.
    transition_writes.add_event(session, event, fan_out(session, event, job))
    move = Transition(
        job.id,
        job.endpoint_id,
        job.request_id,
        event.from_status,
        new.value,
        source.value,
        job.created_at,
        event.at,
    )
    committed.add(session, [move])
    return event


def input_files_of(job: Job) -> list[dict[str, Any]]:
    """What `create_job` recorded of the input's uploaded files (none for older jobs)."""
    first = min(job.events, key=lambda event: event.seq, default=None)
    files = (first.detail or {}).get("input_files") if first is not None else None
    return list(files) if isinstance(files, list) else []


def add_result_files(session: Session, job_id: uuid.UUID, files: Iterable[dict[str, Any]]) -> int:
    rows = [{**f, "job_id": job_id} for f in files]
    # Added only by the transition that completes the job, whose updated_at stamps them
    # for the feed; (job_id, path) is unique.
    transition_writes.add_result_files(session, rows)
    return len(rows)


def parse_uuid(value: uuid.UUID | str) -> uuid.UUID | None:
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


MIN_ID_PREFIX = 8
_HEX = frozenset("0123456789abcdef")


class AmbiguousPrefix(LookupError):
    """More than one job id starts with the prefix given."""


def resolve_job_id(session: Session, text: str) -> uuid.UUID | None:
    """A full job id, or a unique prefix of at least 8 hex digits (dashes ignored, like
    git's abbreviations): one index range scan. None when no job matches; AmbiguousPrefix
    when several do."""
    full = parse_uuid(text)
    if full is not None:
        return full
    prefix = text.replace("-", "").lower()
    if not MIN_ID_PREFIX <= len(prefix) < 32 or not set(prefix) <= _HEX:
        return None
    lowest = uuid.UUID(prefix.ljust(32, "0"))
    highest = uuid.UUID(prefix.ljust(32, "f"))
    found = session.scalars(select(Job.id).where(Job.id >= lowest, Job.id <= highest).limit(2)).all()
    if len(found) > 1:
        raise AmbiguousPrefix(text)
    return found[0] if found else None
