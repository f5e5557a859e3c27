"""Outgoing deliveries in the database: claiming one for an attempt, recording how the
attempt went, finding the due ones, and making new ones for a replay.

A claim is a conditional UPDATE (pending and due, or in flight with an expired lease:
a worker died mid-attempt) that moves the delivery to in_flight with a lease and counts
the attempt; its RETURNING says whether this worker won, so two workers never send the
same delivery at once. The result is recorded only by the claim that made the attempt
(the attempts count is its token): a worker whose lease expired and was overtaken
records its attempt, but leaves the delivery's state to the newer claim.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import cast

from sqlalchemy import Table, and_, bindparam, insert, or_, select, update
from sqlalchemy.orm import Session
from sqlalchemy.sql.dml import ReturningUpdate

from falbridge.models.db import insert_unless_taken
from falbridge.models.outbox import redrive_grace_s
from falbridge.models.tables import DeliveryAttempt, EventDelivery, JobEvent, Subscription, utcnow

# A task enqueued with a countdown may run a hair before the time it was computed for.
CLAIM_EARLY_S = 0.5


@dataclass(frozen=True)
class Claim:
    delivery_id: int
    attempt: int  # the number of this attempt, 1 for the first
    event_id: int
    subscription_id: uuid.UUID | None  # None: one of the job's own callbacks
    target: str = "subscription"


@dataclass(frozen=True)
class AttemptResult:
    status_code: int | None
    latency_ms: int
    response_head: str | None = None
    error: str | None = None
    retry_after_s: float | None = None
    queued: bool = False  # an on_complete task handed to the broker: no HTTP status

    @property
    def succeeded(self) -> bool:
        return self.queued or (self.status_code is not None and 200 <= self.status_code < 300)


_table = cast(Table, EventDelivery.__table__)
_deliveries = _table.c
# Built once, executed with parameters (one claim per wave, one settle per attempt): Core
# columns, so no ORM compile step either. The ids are an expanding parameter: the
# statement is compiled once and rendered for each number of ids.
# The rows are locked in id order, skipping those another claimer holds (PostgreSQL; SQLite
# serialises writers): two waves with ids in common, a sweeper's re-drive racing a
# dispatch, each take what the other does not hold instead of locking in plan order
# and deadlocking.
_CLAIMABLE = (
    select(_deliveries.id)
    .where(
        _deliveries.id.in_(bindparam("delivery_ids", expanding=True)),
        or_(
            and_(_deliveries.status == "pending", _deliveries.next_attempt_at <= bindparam("due_by")),
            and_(_deliveries.status == "in_flight", _deliveries.lease_until < bindparam("now")),
        ),
    )
    .order_by(_deliveries.id)
    .with_for_update(skip_locked=True)
)
_CLAIM = (
    update(_table)
    .where(_deliveries.id.in_(_CLAIMABLE.scalar_subquery()))
    .values(status="in_flight", lease_until=bindparam("new_lease"), attempts=_deliveries.attempts + 1)
    .returning(
        _deliveries.id,
        _deliveries.attempts,
        _deliveries.event_id,
        _deliveries.subscription_id,
        _deliveries.target,
    )
)


def claim_all(session: Session, delivery_ids: Sequence[int], lease_s: float) -> dict[int, Claim]:
    """The deliveries of `delivery_ids` this session won, by id, in one statement. A row
    another claimer holds is skipped, and a row it claimed and committed no longer meets
    the condition, so of two claimers one wins and the other gets nothing."""
    if not delivery_ids:
        return {}
    now = utcnow()
    rows = session.execute(
        _CLAIM,
        {
            "delivery_ids": list(delivery_ids),
            "due_by": now + timedelta(seconds=CLAIM_EARLY_S),
            "now": now,
            "new_lease": now + timedelta(seconds=lease_s),
        },
    ).all()
    return {
        row.id: Claim(row.id, row.attempts, row.event_id, row.subscription_id, row.target) for row in rows
    }


def claim(session: Session, delivery_id: int, lease_s: float) -> Claim | None:
    return claim_all(session, [delivery_id], lease_s).get(delivery_id)


def exists(session: Session, delivery_id: int) -> bool:
    """False once the delivery is gone (its subscription was deleted mid-attempt)."""
    found = session.execute(select(EventDelivery.id).where(EventDelivery.id == delivery_id)).first()
    return found is not None


def add_attempts(session: Session, made: Sequence[tuple[Claim, AttemptResult]], at: datetime) -> None:
    """The attempts' rows, of deliveries known to exist: one INSERT, executed for many."""
    if not made:
        return
    rows = [
        {
            "delivery_id": claimed.delivery_id,
            "at": at,
            "status_code": result.status_code,
            "latency_ms": result.latency_ms,
            "response_head": result.response_head,
            "error": result.error,
        }
        for claimed, result in made
    ]
    session.execute(_ADD_ATTEMPT, rows)


_ADD_ATTEMPT = insert(cast(Table, DeliveryAttempt.__table__))


def settle(session: Session, claimed: Claim, **values: object) -> bool:
    """Set the delivery's outcome, if this claim is still the delivery's latest."""
    params = {f"new_{key}": value for key, value in values.items()}
    settled = session.execute(
        _settle(frozenset(values)), {"delivery_id": claimed.delivery_id, "attempt": claimed.attempt, **params}
    ).one_or_none()
    return settled is not None


@functools.cache
def _settle(keys: frozenset[str]) -> ReturningUpdate[tuple[int]]:
    """The settling UPDATE setting these columns: one statement per outcome's shape."""
    return (
        update(_table)
        .where(
            _deliveries.id == bindparam("delivery_id"),
            _deliveries.status == "in_flight",
            _deliveries.attempts == bindparam("attempt"),
        )
        .values(lease_until=None, **{key: bindparam(f"new_{key}") for key in sorted(keys)})
        .returning(_deliveries.id)
    )


# However long a delivery has waited, the sweeper hands it to the broker again at least
# this often (a lost task costs at most this much delay).
MAX_REDRIVE_GAP_S = 3600.0


def due(session: Session, now: datetime, batch: int) -> Sequence[int]:
    """Deliveries to (re-)drive: pending and due and not just handed to the broker, or in
    flight past their lease. Marked, so the next sweeps leave them to their task: for the
    grace period at first, then for as long as the delivery has been overdue (up to an
    hour), so that a broker queue minutes deep is not fed a copy of every waiting
    delivery at each sweep."""
    rows = session.execute(
        select(
            EventDelivery.id, EventDelivery.status, EventDelivery.next_attempt_at, EventDelivery.lease_until
        )
        .where(
            or_(
                and_(EventDelivery.status == "pending", EventDelivery.next_attempt_at <= now),
                and_(EventDelivery.status == "in_flight", EventDelivery.lease_until < now),
            ),
            or_(EventDelivery.redrive_after.is_(None), EventDelivery.redrive_after <= now),
        )
        .order_by(EventDelivery.next_attempt_at)
        .limit(batch)
        .with_for_update(skip_locked=True)
    ).all()
    if rows:
        grace = redrive_grace_s()
        marks = [
            {"id": row.id, "redrive_after": now + timedelta(seconds=_redrive_gap(*row[1:], now, grace))}
            for row in rows
        ]
        session.execute(update(EventDelivery), marks)
    return [row.id for row in rows]


def _redrive_gap(
    status: str, next_attempt_at: datetime | None, lease_until: datetime | None, now: datetime, grace: float
) -> float:
    since = lease_until if status == "in_flight" else next_attempt_at
    overdue = (now - since).total_seconds() if since is not None else 0.0
    return min(max(grace, overdue), MAX_REDRIVE_GAP_S)


def replay(session: Session, event_id: int, subscription_ids: Sequence[uuid.UUID]) -> list[int]:
    """Deliver the event again to these subscriptions: a new delivery where there was
    none, the existing one made pending and due now (its schedule starting over)
    otherwise. Returns the deliveries' ids, to dispatch after the commit."""
    now = utcnow()
    ids: list[int] = []
    dialect = session.get_bind().dialect.name
    for subscription_id in subscription_ids:
        fresh = _fresh_values(event_id, subscription_id, now)
        inserted = session.execute(
            insert_unless_taken(
                dialect,
                EventDelivery,
                EventDelivery.__table__.c.event_id,
                EventDelivery.__table__.c.subscription_id,
            )
            .values(fresh)
            .returning(EventDelivery.id)
        ).scalar_one_or_none()
        if inserted is None:
            inserted = session.execute(
                update(EventDelivery)
                .where(EventDelivery.event_id == event_id, EventDelivery.subscription_id == subscription_id)
                .values(
                    status="pending",
                    attempts=0,
                    next_attempt_at=now,
                    redrive_after=fresh["redrive_after"],
                    lease_until=None,
                )
                .returning(EventDelivery.id)
                .execution_options(synchronize_session=False)
            ).scalar_one()
        ids.append(inserted)
    return ids


def _fresh_values(event_id: int, subscription_id: uuid.UUID, now: datetime) -> dict[str, object]:
    return {
        "event_id": event_id,
        "subscription_id": subscription_id,
        "status": "pending",
        "attempts": 0,
        "next_attempt_at": now,
        "redrive_after": now + timedelta(seconds=redrive_grace_s()),
        "created_at": now,
    }


def events_since(session: Session, since: datetime, limit: int) -> Sequence[JobEvent]:
    return session.scalars(
        select(JobEvent).where(JobEvent.at >= since).order_by(JobEvent.id).limit(limit)
    ).all()


def enabled_subscriptions(session: Session) -> Sequence[Subscription]:
    return session.scalars(select(Subscription).where(Subscription.enabled.is_(True))).all()
