"""The webhook inbox: store every delivery before we answer it."""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Table, update
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


def dedupe_key(request_id: str, body: bytes) -> str:
    return hashlib.sha256(request_id.encode() + b"\n" + hashlib.sha256(body).digest()).hexdigest()


def store_verified(session: Session, *, request_id: str, body: bytes, headers: dict[str, Any]) -> Stored:
    """Insert a verified delivery once; a re-delivery of the same callback bumps a counter.

    The unique dedupe key decides: `INSERT ... ON CONFLICT (dedupe_key) DO NOTHING`, so
    two receivers handed the same callback at the same moment still leave one row (the
    second waits for the first's commit, then finds the row). One statement on the
    common path: no savepoint and no ORM flush, which were most of the receiver's cost
    (bench/ profile).
    """
    key = dedupe_key(request_id, body)
    values = {
        "request_id": request_id,
        "body": body,
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


def store_rejected(
    session: Session, *, request_id: str | None, body: bytes, headers: dict[str, Any], reason: str
) -> int:
    row = WebhookDelivery(
        request_id=(request_id or None) and request_id[:128],
        body=body,
        headers=headers,
        verified=False,
        rejection_reason=reason,
        received_at=utcnow(),
        processed_at=utcnow(),
        outcome="rejected",
    )
    session.add(row)
    session.flush()
    return row.id
