"""The webhook inbox: store every delivery before we answer it."""

from __future__ import annotations

import functools
import hashlib
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, delete, func, select, update
from sqlalchemy.orm import Session
from sqlalchemy.sql.dml import ReturningInsert

from falbridge.models.db import insert_unless_taken
from falbridge.models.tables import WebhookDelivery, utcnow

# Declared as a FromClause by the ORM; a mapped class's table is a Table.
_table = cast(Table, WebhookDelivery.__table__)


@dataclass(frozen=True)
class Stored:
    delivery_id: int
    duplicate: bool
    processed: bool


# A rejected delivery keeps this much of its body: enough to see what was sent.
EVIDENCE_BYTES = 4096


def dedupe_key(request_id: str, body: bytes) -> str:
    return _dedupe_key(request_id, hashlib.sha256(body).digest())


def _dedupe_key(request_id: str, body_digest: bytes) -> str:
    return hashlib.sha256(request_id.encode() + b"\n" + body_digest).hexdigest()


def store_verified(session: Session, *, request_id: str, body: bytes, headers: dict[str, Any]) -> Stored:
    """Insert a verified delivery once; a re-delivery of the same callback bumps a counter.

    The unique dedupe key decides: `INSERT ... ON CONFLICT (dedupe_key) DO NOTHING`, so
    two receivers handed the same callback at the same moment still leave one row (the
    second waits for the first's commit, then finds the row). One statement on the
    common path: no savepoint and no ORM flush, which were most of the receiver's cost
    (bench/ profile).
    """
    digest = hashlib.sha256(body)
    key = _dedupe_key(request_id, digest.digest())
    values = {
        "request_id": request_id,
        "body": body,
        "body_sha256": digest.hexdigest(),
        "body_length": len(body),
        "headers": headers,
        "verified": True,
        "dedupe_key": key,
        "received_at": utcnow(),
        "redeliveries": 0,
    }
    inserted = session.execute(_insert_once(session.get_bind().dialect.name), values).scalar()
    if inserted is not None:
        return Stored(inserted, duplicate=False, processed=False)
    existing = session.execute(
        update(_table)
        .where(_table.c.dedupe_key == key)
        .values(redeliveries=_table.c.redeliveries + 1)
        .returning(_table.c.id, _table.c.processed_at)
    ).one()
    return Stored(existing.id, duplicate=True, processed=existing.processed_at is not None)


@functools.cache
def _insert_once(dialect: str) -> ReturningInsert[int]:
    """INSERT ... ON CONFLICT (dedupe_key) DO NOTHING RETURNING id, built once per dialect;
    the values come as parameters."""
    return insert_unless_taken(dialect, _table, _table.c.dedupe_key).returning(_table.c.id)


@dataclass(frozen=True)
class Claimed:
    """A stored, verified delivery not yet applied, its row locked by the claiming
    transaction (PostgreSQL; on SQLite that transaction holds the write lock)."""

    id: int
    body: bytes
    headers: dict[str, Any]


@dataclass(frozen=True)
class Processed:
    """What applying a claimed delivery recorded on its row."""

    delivery_id: int
    outcome: str
    job_id: uuid.UUID | None = None
    processing_error: str | None = None


_CLAIMED_COLUMNS = (_table.c.id, _table.c.body, _table.c.headers)
_UNAPPLIED = (_table.c.processed_at.is_(None), _table.c.verified.is_(True))


def claim_one(session: Session, delivery_id: int) -> Claimed | None:
    """The delivery, locked until the transaction ends; None unless verified and unapplied."""
    row = session.execute(
        select(*_CLAIMED_COLUMNS).where(_table.c.id == delivery_id, *_UNAPPLIED).with_for_update()
    ).one_or_none()
    return None if row is None else Claimed(row.id, row.body, row.headers or {})


def claim_unapplied(session: Session, limit: int, passed_over: Collection[int] = ()) -> list[Claimed]:
    """Up to `limit` unapplied verified deliveries, oldest first, locked until the
    transaction ends. Rows another transaction holds are skipped (SKIP LOCKED: a concurrent
    drainer is applying them); SQLite has no row locks, and its BEGIN IMMEDIATE makes
    claimers take turns. `passed_over`: ids this drainer already failed to apply, left to
    the sweeper so that one poisoned row cannot stall the drain."""
    query = select(*_CLAIMED_COLUMNS).where(*_UNAPPLIED)
    if passed_over:
        query = query.where(_table.c.id.not_in(list(passed_over)))
    rows = session.execute(query.order_by(_table.c.id).limit(limit).with_for_update(skip_locked=True))
    return [Claimed(row.id, row.body, row.headers or {}) for row in rows]


_RECORD_PROCESSED = (
    update(_table)
    .where(_table.c.id == bindparam("p_id"))
    .values(
        # Prefixed: a bound parameter may not take the name of a column it sets.
        processed_at=bindparam("p_at"),
        outcome=bindparam("p_outcome"),
        job_id=bindparam("p_job"),
        processing_error=bindparam("p_error"),
    )
)


def record_processed(session: Session, processed: Sequence[Processed]) -> None:
    """Mark claimed deliveries applied, all in one statement (executemany)."""
    if not processed:
        return
    now = utcnow()
    session.execute(
        _RECORD_PROCESSED,
        [
            {
                "p_id": p.delivery_id,
                "p_at": now,
                "p_outcome": p.outcome,
                "p_job": p.job_id,
                "p_error": p.processing_error,
            }
            for p in processed
        ],
    )


def store_rejected(
    session: Session,
    *,
    request_id: str | None,
    code: str,
    reason: str,
    headers: dict[str, Any],
    body: bytes | None,
    declared_length: int | None = None,
) -> int:
    """Record a refusal as evidence: the body's digest and length and its first 4 KiB, or,
    refused before it was read (`body` None), the length it declared."""
    row = WebhookDelivery(
        request_id=(request_id or None) and request_id[:128],
        body=b"" if body is None else body[:EVIDENCE_BYTES],
        body_sha256=None if body is None else hashlib.sha256(body).hexdigest(),
        body_length=declared_length if body is None else len(body),
        headers=headers,
        verified=False,
        rejected_as=code[:32],
        rejection_reason=reason,
        received_at=utcnow(),
        processed_at=utcnow(),
        outcome="rejected",
    )
    session.add(row)
    session.flush()
    return row.id


def rejection_counts(session: Session, since: datetime | None = None) -> dict[str, int]:
    """Rejected deliveries by reason code (those still kept), optionally since a time."""
    query = select(WebhookDelivery.rejected_as, func.count()).where(WebhookDelivery.verified.is_(False))
    if since is not None:
        query = query.where(WebhookDelivery.received_at >= since)
    counted = session.execute(query.group_by(WebhookDelivery.rejected_as))
    return {code or "unknown": count for code, count in counted}


def prune_rejected(session: Session, *, received_before: datetime, batch: int) -> int:
    """Delete up to `batch` rejected deliveries received before the cutoff; how many."""
    doomed = (
        select(WebhookDelivery.id)
        .where(WebhookDelivery.verified.is_(False), WebhookDelivery.received_at < received_before)
        .limit(batch)
    )
    ids = list(session.scalars(doomed))
    if ids:
        session.execute(delete(WebhookDelivery).where(WebhookDelivery.id.in_(ids)))
    return len(ids)
