"""Job queries: idempotent creation, state transitions, result files, history listing."""

from __future__ import annotations

import base64
import functools
import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, Row, inspect, select, tuple_, update
from sqlalchemy.orm import Session, selectinload
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.sql.dml import ReturningInsert

from falbridge.models.db import insert_unless_taken
from falbridge.models.states import EventSource, JobStatus, can_transition
from falbridge.models.tables import Job, JobEvent, ResultFile, utcnow


def create_job(
    session: Session,
    endpoint_id: str,
    input: dict[str, Any],
    *,
    external_id: str | None = None,
    metadata: dict[str, Any] | None = None,
    source: EventSource = EventSource.API,
) -> tuple[Job, bool]:
    """Insert a pending job; with an external_id already taken, return that job instead.

    The unique index decides, not a prior SELECT: `INSERT ... ON CONFLICT (external_id)
    DO NOTHING RETURNING`, so two callers racing with the same external_id both reach the
    INSERT, one wins, the other waits for its commit and reads the winner's row. One
    statement on the common path, no savepoint (the API's cost, bench/ profile).
    Either way the job comes back with `files` and `events` loaded, ready for `job_detail`.
    """
    values = {
        "id": uuid.uuid4(),
        "endpoint_id": endpoint_id,
        "input": input,
        "external_id": external_id,
        "meta": metadata,
        "status": JobStatus.PENDING.value,
    }
    job = session.scalars(_insert_job_once(session.get_bind().dialect.name).values(values)).one_or_none()
    if job is None:
        existing = session.scalar(
            select(Job)
            .where(Job.external_id == external_id)
            .options(selectinload(Job.files), selectinload(Job.events))
        )
        if existing is None:  # the conflict was on something else: don't hide it
            raise RuntimeError(f"job insert for external_id {external_id!r} conflicted, yet no job holds it")
        return existing, False
    event = _add_event(session, job.id, None, JobStatus.PENDING, source)
    # A new job has no files and exactly this event: no need to read them back.
    set_committed_value(job, "files", [])
    set_committed_value(job, "events", [event])
    return job, True


@functools.cache
def _insert_job_once(dialect: str) -> ReturningInsert[Job]:
    return insert_unless_taken(dialect, Job, Job.__table__.c.external_id).returning(Job)


def get_job(session: Session, job_id: uuid.UUID | str, *, full: bool = False) -> Job | None:
    job_uuid = parse_uuid(job_id)
    if job_uuid is None:
        return None
    stmt = select(Job).where(Job.id == job_uuid)
    if full:
        stmt = stmt.options(selectinload(Job.files), selectinload(Job.events))
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
    pending = {
        attr.key: getattr(job, attr.key)
        for attr in inspect(job).mapper.column_attrs
        if inspect(job).attrs[attr.key].history.has_changes()
    }
    values = dict(pending, **fields, status=new.value, updated_at=utcnow())
    if new.is_terminal and "completed_at" not in values:
        values["completed_at"] = utcnow()
    # Conditional on the status we read, so that even without a row lock a concurrent
    # writer cannot be overwritten: the loser's UPDATE matches no row.
    with session.no_autoflush:
        # An UPDATE's result is a CursorResult, which has the matched row count.
        result = cast(
            "CursorResult[Any]",
            session.execute(
                update(Job)
                .where(Job.id == job.id, Job.status == current.value)
                .values({getattr(Job, name): value for name, value in values.items()})
                .execution_options(synchronize_session=False)
            ),
        )
    if result.rowcount != 1:
        return False
    for name, value in values.items():
        # Reflect the UPDATE in the loaded object without making the ORM write it again.
        set_committed_value(job, name, value)
    _add_event(session, job.id, current, new, source, detail)
    return True


def _add_event(
    session: Session,
    job_id: uuid.UUID,
    old: JobStatus | None,
    new: JobStatus,
    source: EventSource,
    detail: dict[str, Any] | None = None,
) -> JobEvent:
    event = JobEvent(
        job_id=job_id,
        from_status=old.value if old else None,
        to_status=new.value,
        source=source.value,
        detail=detail,
        at=utcnow(),
    )
    session.add(event)
    return event


def add_result_files(session: Session, job_id: uuid.UUID, files: Iterable[dict[str, Any]]) -> int:
    count = 0
    for f in files:
        session.add(ResultFile(job_id=job_id, **f))
        count += 1
    # Written by the transaction's next flush (at the latest its commit), together with
    # everything else it changed; (job_id, path) is unique either way.
    return count


# -- listing -----------------------------------------------------------------

MAX_PAGE = 500


@dataclass(frozen=True)
class JobFilters:
    status: str | None = None
    endpoint_id: str | None = None
    external_id: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None


class CursorError(ValueError):
    pass


def encode_cursor(job: Job | Row[Any]) -> str:
    raw = json.dumps([job.created_at.isoformat(), str(job.id)]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created, job_id = json.loads(raw)
        at = datetime.fromisoformat(created)
        if at.tzinfo is None:
            raise ValueError("naive")
        return at, uuid.UUID(job_id)
    except (ValueError, TypeError, AttributeError, RecursionError, OverflowError) as exc:
        raise CursorError("cursor is not one this API issued") from exc


# What a listing shows (models.serialize.job_summary): not the input, result or fal's URLs.
# An input can hold megabytes of data URIs; a page of 500 must not load them all.
SUMMARY_COLUMNS = (
    Job.id,
    Job.endpoint_id,
    Job.status,
    Job.external_id,
    Job.meta,
    Job.request_id,
    Job.gateway_request_id,
    Job.result_pending,
    Job.error,
    Job.error_type,
    Job.error_detail,
    Job.created_at,
    Job.updated_at,
    Job.submitted_at,
    Job.completed_at,
    Job.cancel_requested_at,
    Job.last_polled_at,
    Job.resubmitted_at,
    Job.submit_attempts,
    Job.poll_attempts,
    Job.webhook_count,
)


def list_jobs(
    session: Session, filters: JobFilters, *, limit: int = 50, cursor: str | None = None
) -> tuple[list[Row[Any]], str | None]:
    """Newest first, keyset-paginated on (created_at, id) so deep pages cost what the first does.

    Rows of SUMMARY_COLUMNS, read by attribute like a Job (`row.status`, `row.meta`), not
    ORM objects: building 500 of those cost more than the query (bench/ history profile).
    """
    if not 1 <= limit <= MAX_PAGE:
        raise ValueError(f"limit must be between 1 and {MAX_PAGE}")
    stmt = select(*SUMMARY_COLUMNS)
    if filters.status:
        stmt = stmt.where(Job.status == filters.status)
    if filters.endpoint_id:
        stmt = stmt.where(Job.endpoint_id == filters.endpoint_id)
    if filters.external_id:
        stmt = stmt.where(Job.external_id == filters.external_id)
    if filters.created_after:
        stmt = stmt.where(Job.created_at >= filters.created_after)
    if filters.created_before:
        stmt = stmt.where(Job.created_at < filters.created_before)
    if cursor:
        at, last_id = decode_cursor(cursor)
        stmt = stmt.where(tuple_(Job.created_at, Job.id) < tuple_(at, last_id))
    stmt = stmt.order_by(Job.created_at.desc(), Job.id.desc()).limit(limit + 1)
    rows = list(session.execute(stmt))
    next_cursor = encode_cursor(rows[limit - 1]) if len(rows) > limit else None
    return rows[:limit], next_cursor


def parse_uuid(value: uuid.UUID | str) -> uuid.UUID | None:
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None
