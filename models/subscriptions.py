"""Subscriptions to outgoing webhooks: made with a new secret (returned once, stored
encrypted), changed, deleted, their secret rotated, and their health (a run of failures
since when; disabled, and why).

The URL's own rule (public addresses, or the allowed networks) is the caller's to check
first: it needs DNS, which is no business of the models (falbridge.worker.notify.address).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Row, Select, Table, bindparam, delete, select, update
from sqlalchemy.orm import Session

from falbridge.config import Config
from falbridge.models import secrets
from falbridge.models.db import insert_unless_taken
from falbridge.models.outbox import EVENT_TYPES
from falbridge.models.tables import Subscription, utcnow


class DuplicateSubscription(ValueError):
    """Another subscription has the same URL and the same event types."""

    def __init__(self, existing: uuid.UUID):
        super().__init__(f"subscription {existing} already sends these events to this URL")
        self.existing = existing


def normalized_events(events: Iterable[str]) -> list[str]:
    """The event types, each once, in a stable order; ValueError naming an unknown one."""
    unknown = sorted(set(events) - set(EVENT_TYPES))
    if unknown:
        raise ValueError(f"unknown event type {unknown[0][:64]!r}; known: {', '.join(EVENT_TYPES)}")
    return sorted(set(events))


def dedupe_key(url: str, events: Sequence[str]) -> str:
    return hashlib.sha256("\n".join([url, *sorted(set(events))]).encode()).hexdigest()


def create(
    session: Session, cfg: Config, url: str, events: Sequence[str], description: str | None
) -> tuple[Subscription, str]:
    """A new enabled subscription and its secret, in clear for the one time it is shown;
    DuplicateSubscription when the URL already gets these events."""
    subscription_id, secret, now = uuid.uuid4(), secrets.new_secret(), utcnow()
    key = dedupe_key(url, events)
    values = {
        "id": subscription_id,
        "url": url,
        "events": list(events),
        "description": description,
        "dedupe_key": key,
        "enabled": True,
        "secret_encrypted": secrets.encrypt(cfg, subscription_id, secret),
        "created_at": now,
        "updated_at": now,
    }
    table = Subscription.__table__
    dialect = session.get_bind().dialect.name
    made = session.scalars(
        insert_unless_taken(dialect, Subscription, table.c.dedupe_key).values(values).returning(Subscription)
    ).one_or_none()
    if made is None:
        raise DuplicateSubscription(_holder(session, key))
    return made, secret


def _holder(session: Session, key: str) -> uuid.UUID:
    return session.scalars(select(Subscription.id).where(Subscription.dedupe_key == key)).one()


def get(session: Session, subscription_id: uuid.UUID) -> Subscription | None:
    return session.get(Subscription, subscription_id)


def listing(session: Session) -> Sequence[Subscription]:
    return session.scalars(select(Subscription).order_by(Subscription.created_at, Subscription.id)).all()


def change(
    session: Session,
    subscription: Subscription,
    *,
    url: str | None = None,
    events: Sequence[str] | None = None,
    enabled: bool | None = None,
    description: str | None = None,
) -> Subscription:
    """Apply the fields given (None: unchanged). Re-enabling clears the reason it was
    disabled and its run of failures."""
    if url is not None or events is not None:
        key = dedupe_key(url or subscription.url, events or subscription.events)
        taken = session.scalars(
            select(Subscription.id).where(Subscription.dedupe_key == key, Subscription.id != subscription.id)
        ).one_or_none()
        if taken is not None:
            raise DuplicateSubscription(taken)
        subscription.dedupe_key = key
        subscription.url = url or subscription.url
        subscription.events = list(events or subscription.events)
    if description is not None:
        subscription.description = description
    if enabled is not None:
        if enabled and not subscription.enabled:
            subscription.disabled_reason, subscription.failing_since = None, None
        subscription.enabled = enabled
    subscription.updated_at = utcnow()
    session.flush()
    return subscription


def remove(session: Session, subscription_id: uuid.UUID) -> bool:
    gone = session.execute(delete(Subscription).where(Subscription.id == subscription_id))
    return bool(getattr(gone, "rowcount", 0))


def rotate(session: Session, cfg: Config, subscription: Subscription) -> str:
    """A new secret, returned in clear this once; the old one keeps signing beside it for
    FALBRIDGE_NOTIFY_ROTATION_OVERLAP_S."""
    secret = secrets.new_secret()
    subscription.previous_secret_encrypted = subscription.secret_encrypted
    subscription.previous_secret_expires_at = utcnow() + timedelta(seconds=cfg.notify.rotation_overlap_s)
    subscription.secret_encrypted = secrets.encrypt(cfg, subscription.id, secret)
    subscription.updated_at = utcnow()
    session.flush()
    return secret


_table = cast(Table, Subscription.__table__)
_subscriptions = _table.c
# Built once, executed with parameters: read for every wave of delivery attempts.
_SIGNING_VIEWS: Select[Any] = select(
    _subscriptions.id,
    _subscriptions.url,
    _subscriptions.enabled,
    _subscriptions.disabled_reason,
    _subscriptions.secret_encrypted,
    _subscriptions.previous_secret_encrypted,
    _subscriptions.previous_secret_expires_at,
).where(_subscriptions.id.in_(bindparam("subscription_ids", expanding=True)))
_NOTE_SUCCESS = (
    update(_table)
    .where(
        _subscriptions.id.in_(bindparam("subscription_ids", expanding=True)),
        _subscriptions.failing_since.is_not(None),
    )
    .values(failing_since=None)
)


def signing_views(session: Session, subscription_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, Row[Any]]:
    """What a wave of delivery attempts reads of its subscriptions, by id (Core, one
    statement): where to send, whether to, and the secrets to sign with, still
    encrypted. A subscription missing is deleted."""
    wanted = sorted(set(subscription_ids))
    if not wanted:
        return {}
    return {row.id: row for row in session.execute(_SIGNING_VIEWS, {"subscription_ids": wanted})}


def signing_secrets(cfg: Config, subscription: Subscription | Row[Any], now: datetime) -> list[str]:
    """The secrets that sign now: the current one, and the previous one in its overlap."""
    return secrets.signing(
        cfg,
        subscription.id,
        subscription.secret_encrypted,
        subscription.previous_secret_encrypted,
        subscription.previous_secret_expires_at,
        now,
    )


def note_success(session: Session, subscription_id: uuid.UUID) -> None:
    note_successes(session, [subscription_id])


def note_successes(session: Session, subscription_ids: Iterable[uuid.UUID]) -> None:
    """End these subscriptions' runs of failures: one UPDATE for a wave's successes."""
    wanted = sorted(set(subscription_ids))
    if wanted:
        session.execute(_NOTE_SUCCESS, {"subscription_ids": wanted})


def note_failure(session: Session, subscription_id: uuid.UUID, now: datetime, disable_after_s: float) -> None:
    """Start the run of failures if none is running; disable a subscription whose run is
    older than `disable_after_s`."""
    session.execute(
        update(Subscription)
        .where(Subscription.id == subscription_id, Subscription.failing_since.is_(None))
        .values(failing_since=now)
    )
    since = now - timedelta(seconds=disable_after_s)
    session.execute(
        update(Subscription)
        .where(
            Subscription.id == subscription_id,
            Subscription.enabled.is_(True),
            Subscription.failing_since <= since,
        )
        .values(
            enabled=False,
            disabled_reason=f"disabled at {now.isoformat()}: deliveries kept failing for more than "
            f"{disable_after_s:g} s (FALBRIDGE_NOTIFY_DISABLE_AFTER_S)",
        )
    )


def disable(session: Session, subscription_id: uuid.UUID, reason: str) -> None:
    session.execute(
        update(Subscription)
        .where(Subscription.id == subscription_id)
        .values(enabled=False, disabled_reason=reason)
    )
