"""Retention: the rows of old finished jobs, removed (or compacted) one short batch at a time.

A job is old when it is terminal (completed, failed, cancelled: a running job is never
touched) and its `updated_at` is before the cutoff. `updated_at` is stamped by the change
that made the job terminal and by any later change of its result or files, so it is when
the job was last worth looking at; the changes feed walks the same index.

One batch is one transaction: the oldest `limit` jobs after the cursor, locked (FOR
UPDATE SKIP LOCKED on PostgreSQL, so two purges, or a purge and a worker, never wait on
each other's rows: a locked job is left for the other, or for the next run), then their
dependants, then the jobs. The stored files' keys come back from the DELETE itself
(RETURNING), so only the purge that deleted a row ever deletes its object; the caller
deletes the objects after the commit (falbridge.worker.purge).

Uploads recorded before the cutoff are forgotten too (`purge_uploads_batch`), and each
batch returns the digests whose references it removed: the caller deletes a digest's input
copy once nothing names it any more (falbridge.models.input_copies.unreferenced).

Removed with a job: its events, their outgoing deliveries and every attempt (the outbox),
its result files, its stored files, and fal's callbacks for it in the inbox (by job, and by
request id for a callback that was never matched to the job). Compacting keeps the job row
and its events (the history) and drops the input (left as `{}`), the result, the error's
detail, the result and stored files, the references to its input copies, and the inbox's
callbacks (they carry the result).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, any_, delete, func, literal, or_, select, tuple_, union, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import QueryableAttribute, Session

from falbridge.models.clock import db_now
from falbridge.models.states import TERMINAL
from falbridge.models.tables import (
    DeliveryAttempt,
    EventDelivery,
    InputUpload,
    Job,
    JobEvent,
    JobInput,
    ResultFile,
    StoredFile,
    WebhookDelivery,
)

# The order rows go in (children before parents): the report's order too.
TABLES = (
    "jobs",
    "job_events",
    "event_deliveries",
    "delivery_attempts",
    "result_files",
    "stored_files",
    "webhook_deliveries",
    "job_inputs",
    "input_uploads",
)
COMPACT_TABLES = ("jobs", "result_files", "stored_files", "webhook_deliveries", "job_inputs", "input_uploads")
Cursor = tuple[datetime, uuid.UUID]


@dataclass
class Batch:
    """What one batch removed: rows per table, the stored objects to delete, and the
    cursor to continue after (None when there was nothing left to take)."""

    rows: dict[str, int] = field(default_factory=dict)
    keys: list[str] = field(default_factory=list)
    bytes: int = 0
    after: Cursor | None = None
    digests: set[str] = field(default_factory=set)  # input copies that may have lost their last reference
    last_upload: int | None = None  # the id to continue after, for uploads


def _old(cutoff: datetime, compact: bool) -> list[ColumnElement[bool]]:
    conditions = [Job.status.in_([s.value for s in TERMINAL]), Job.updated_at < cutoff]
    if compact:  # compacted once is compacted: a second run has nothing more to drop
        conditions.append(Job.compacted_at.is_(None))
    return conditions


def _take(session: Session, cutoff: datetime, after: Cursor | None, limit: int, compact: bool) -> list[Any]:
    stmt = select(Job.id, Job.updated_at, Job.request_id).where(*_old(cutoff, compact))
    if after is not None:
        stmt = stmt.where(tuple_(Job.updated_at, Job.id) > tuple_(*after))
    stmt = stmt.order_by(Job.updated_at, Job.id).limit(limit).with_for_update(skip_locked=True)
    return list(session.execute(stmt).all())


def purge_batch(
    session: Session, cutoff: datetime, after: Cursor | None, limit: int, *, compact: bool
) -> Batch:
    """Remove (or compact) the next `limit` old jobs after `after`, in the caller's
    transaction."""
    taken = _take(session, cutoff, after, limit, compact)
    if not taken:
        return Batch()
    pg = session.get_bind().dialect.name == "postgresql"
    ids = _Among([row.id for row in taken], pg)
    request_ids = _Among([row.request_id for row in taken if row.request_id is not None], pg)
    batch = Batch(after=(taken[-1].updated_at, taken[-1].id))
    if not compact:
        _remove_outbox(session, ids, batch)
    _remove_files(session, ids, batch)
    batch.rows["webhook_deliveries"] = _count(
        session.execute(delete(WebhookDelivery).where(_inbox_of(ids, request_ids)))
    )
    if compact:
        done = session.execute(
            update(Job)
            .where(ids.of(Job.id))
            .values(input={}, result=None, result_pending=False, error_detail=None, compacted_at=db_now())
        )
    else:
        done = session.execute(delete(Job).where(ids.of(Job.id)))
    batch.rows["jobs"] = _count(done)
    return batch


def _remove_outbox(session: Session, ids: _Among, batch: Batch) -> None:
    events = select(JobEvent.id).where(ids.of(JobEvent.job_id))
    deliveries = select(EventDelivery.id).where(EventDelivery.event_id.in_(events))
    batch.rows["delivery_attempts"] = _count(
        session.execute(delete(DeliveryAttempt).where(DeliveryAttempt.delivery_id.in_(deliveries)))
    )
    batch.rows["event_deliveries"] = _count(
        session.execute(delete(EventDelivery).where(EventDelivery.event_id.in_(events)))
    )
    batch.rows["job_events"] = _count(session.execute(delete(JobEvent).where(ids.of(JobEvent.job_id))))


def _remove_files(session: Session, ids: _Among, batch: Batch) -> None:
    batch.rows["result_files"] = _count(session.execute(delete(ResultFile).where(ids.of(ResultFile.job_id))))
    released = session.execute(delete(JobInput).where(ids.of(JobInput.job_id)).returning(JobInput.sha256))
    digests = released.scalars().all()
    batch.rows["job_inputs"] = len(digests)
    batch.digests.update(digests)
    stored = delete(StoredFile).where(ids.of(StoredFile.job_id))
    gone = session.execute(stored.returning(StoredFile.storage_key, StoredFile.size)).all()
    batch.rows["stored_files"] = len(gone)
    batch.keys = [row.storage_key for row in gone if row.storage_key]
    batch.bytes = sum(row.size or 0 for row in gone if row.storage_key)


def purge_uploads_batch(session: Session, cutoff: datetime, after: int | None, limit: int) -> Batch:
    """Forget the next `limit` uploads recorded before the cutoff (a job naming their URL
    from now on records no digest); `Batch.last_upload` is the id to continue after."""
    stmt = select(InputUpload.id).where(InputUpload.uploaded_at < cutoff)
    if after is not None:
        stmt = stmt.where(InputUpload.id > after)
    stmt = stmt.order_by(InputUpload.id).limit(limit).with_for_update(skip_locked=True)
    taken = list(session.scalars(stmt))
    if not taken:
        return Batch()
    ids = _Among(taken, session.get_bind().dialect.name == "postgresql")
    digests = session.execute(delete(InputUpload).where(ids.of(InputUpload.id)).returning(InputUpload.sha256))
    batch = Batch(digests=set(digests.scalars().all()), last_upload=taken[-1])
    batch.rows["input_uploads"] = len(taken)
    return batch


def _inbox_of(ids: _Among, request_ids: _Among) -> ColumnElement[bool]:
    by_job = ids.of(WebhookDelivery.job_id)
    return or_(by_job, request_ids.of(WebhookDelivery.request_id)) if request_ids.values else by_job


@dataclass
class _Among:
    """A batch's keys in a WHERE: on PostgreSQL one array parameter (`= ANY(...)`), so
    every batch runs the same short statement (500 separate parameters made the driver
    re-parse a long one each time: a third of the purge's time); elsewhere `IN (...)`."""

    values: list[Any]
    pg: bool

    def of(self, column: QueryableAttribute[Any]) -> ColumnElement[bool]:
        if self.pg:
            return column == any_(literal(self.values, ARRAY(column.type)))
        return column.in_(self.values)


def _count(result: Any) -> int:
    return int(result.rowcount or 0)


def would_remove(session: Session, cutoff: datetime, *, compact: bool) -> tuple[dict[str, int], int, int]:
    """The dry run: rows per table, bytes of stored files and input copies a purge would
    remove now."""
    old: Select[Any] = select(Job.id).where(*_old(cutoff, compact))
    old_requests = select(Job.request_id).where(*_old(cutoff, compact), Job.request_id.is_not(None))
    events = select(JobEvent.id).where(JobEvent.job_id.in_(old))
    deliveries = select(EventDelivery.id).where(EventDelivery.event_id.in_(events))
    counted = {
        "jobs": select(func.count()).select_from(old.subquery()),
        "job_events": select(func.count()).where(JobEvent.job_id.in_(old)),
        "event_deliveries": select(func.count()).where(EventDelivery.event_id.in_(events)),
        "delivery_attempts": select(func.count()).where(DeliveryAttempt.delivery_id.in_(deliveries)),
        "result_files": select(func.count()).where(ResultFile.job_id.in_(old)),
        "stored_files": select(func.count()).where(StoredFile.job_id.in_(old)),
        "webhook_deliveries": select(func.count()).where(
            or_(WebhookDelivery.job_id.in_(old), WebhookDelivery.request_id.in_(old_requests))
        ),
        "job_inputs": select(func.count()).where(JobInput.job_id.in_(old)),
        "input_uploads": select(func.count()).where(InputUpload.uploaded_at < cutoff),
    }
    tables = COMPACT_TABLES if compact else TABLES
    rows = {name: int(session.scalar(counted[name]) or 0) for name in tables}
    stored_bytes = session.scalar(
        select(func.coalesce(func.sum(StoredFile.size), 0)).where(
            StoredFile.job_id.in_(old), StoredFile.storage_key.is_not(None)
        )
    )
    return rows, int(stored_bytes or 0), _copies_released(session, old, cutoff)


def _copies_released(session: Session, old: Select[Any], cutoff: datetime) -> int:
    """Digests named only by what the purge removes: their copies would go."""
    going = union(
        select(JobInput.sha256).where(JobInput.job_id.in_(old)),
        select(InputUpload.sha256).where(InputUpload.uploaded_at < cutoff),
    ).subquery()
    staying = union(
        select(JobInput.sha256).where(JobInput.job_id.not_in(old)),
        select(InputUpload.sha256).where(InputUpload.uploaded_at >= cutoff),
    )
    return int(
        session.scalar(select(func.count()).select_from(going).where(going.c.sha256.not_in(staying))) or 0
    )
