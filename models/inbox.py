"""The webhook inbox: store every delivery before we answer it."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from models.tables import WebhookDelivery, utcnow


@dataclass(frozen=True)
class Stored:
    delivery_id: int
    duplicate: bool
    processed: bool


def dedupe_key(request_id: str, body: bytes) -> str:
    return hashlib.sha256(request_id.encode() + b"\n" + hashlib.sha256(body).digest()).hexdigest()


def store_verified(session: Session, *, request_id: str, body: bytes,
                   headers: dict[str, Any]) -> Stored:
    """Insert a verified delivery once; a re-delivery of the same callback bumps a counter.

    The unique dedupe key decides, inside a savepoint, so two receivers handed the same
    callback at the same moment still leave one row.
    """
    key = dedupe_key(request_id, body)
    row = WebhookDelivery(request_id=request_id, body=body, headers=headers, verified=True,
                          dedupe_key=key, received_at=utcnow())
    try:
        with session.begin_nested():
            session.add(row)
        return Stored(row.id, duplicate=False, processed=False)
    except IntegrityError:
        session.execute(update(WebhookDelivery).where(WebhookDelivery.dedupe_key == key)
                        .values(redeliveries=WebhookDelivery.redeliveries + 1))
        existing = session.execute(select(WebhookDelivery.id, WebhookDelivery.processed_at)
                                   .where(WebhookDelivery.dedupe_key == key)).one()
        return Stored(existing.id, duplicate=True, processed=existing.processed_at is not None)


def store_rejected(session: Session, *, request_id: str | None, body: bytes,
                   headers: dict[str, Any], reason: str) -> int:
    row = WebhookDelivery(request_id=(request_id or None) and request_id[:128], body=body,
                          headers=headers, verified=False, rejection_reason=reason,
                          received_at=utcnow(), processed_at=utcnow(), outcome="rejected")
    session.add(row)
    session.flush()
    return row.id
