"""What a user does with subscriptions, from the HTTP API, Python or the CLI: make one
(its secret shown this once), list, show, change, delete, rotate its secret, see its
deliveries and the dead letters, and replay events. Each answers the JSON shapes of
falbridge.models.serialize; new deliveries are dispatched after their commit.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from falbridge import config
from falbridge.models import event_deliveries as deliveries
from falbridge.models import outbox, subscriptions
from falbridge.models.db import transaction
from falbridge.models.serialize import delivery_dict, subscription_dict
from falbridge.models.subscriptions import DuplicateSubscription
from falbridge.models.tables import DELIVERY_STATUSES, DeliveryAttempt, EventDelivery, JobEvent, Subscription
from falbridge.worker.notify.address import refusal

__all__ = ["DuplicateSubscription", "InvalidSubscription"]
MAX_DESCRIPTION = 1000
MAX_EVENTS = 16
MAX_LISTED = 500
MAX_REPLAYED = 10_000


class InvalidSubscription(ValueError):
    """A field of a subscription can't be used; `field` names it."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field, self.message = field, message


def checked_url(url: object) -> str:
    if not isinstance(url, str) or not url:
        raise InvalidSubscription("url", "must be a non-empty string")
    why = refusal(url, config.current().notify.networks())
    if why is not None:
        raise InvalidSubscription("url", why)
    return url


def checked_events(events: object) -> list[str]:
    if not isinstance(events, list) or not events or not all(isinstance(e, str) for e in events):
        raise InvalidSubscription("events", "must be a non-empty list of event types")
    if len(events) > MAX_EVENTS:  # the bound the OpenAPI document states
        raise InvalidSubscription("events", f"must list at most {MAX_EVENTS} event types")
    try:
        return subscriptions.normalized_events(events)
    except ValueError as exc:
        raise InvalidSubscription("events", str(exc)) from None


def checked_description(description: object) -> str | None:
    if description is None:
        return None
    if not isinstance(description, str) or len(description) > MAX_DESCRIPTION or "\x00" in description:
        raise InvalidSubscription("description", f"must be a string of at most {MAX_DESCRIPTION} characters")
    return description


def create(url: object, events: object, description: object = None) -> dict[str, Any]:
    """The new subscription, with its `secret`: the only time it is shown."""
    fields = checked_url(url), checked_events(events), checked_description(description)
    with transaction() as s:
        made, secret = subscriptions.create(s, config.current(), *fields)
        return {**subscription_dict(made), "secret": secret}


def listing() -> list[dict[str, Any]]:
    with transaction() as s:
        return [subscription_dict(sub) for sub in subscriptions.listing(s)]


def show(subscription_id: str) -> dict[str, Any] | None:
    with transaction() as s:
        found = _get(s, subscription_id)
        return subscription_dict(found) if found is not None else None


def update(subscription_id: str, **fields: object) -> dict[str, Any] | None:
    """Change url, events, enabled, description (those given)."""
    changes: dict[str, Any] = {}
    if fields.get("url") is not None:
        changes["url"] = checked_url(fields["url"])
    if fields.get("events") is not None:
        changes["events"] = checked_events(fields["events"])
    if fields.get("description") is not None:
        changes["description"] = checked_description(fields["description"])
    if fields.get("enabled") is not None:
        if not isinstance(fields["enabled"], bool):
            raise InvalidSubscription("enabled", "must be true or false")
        changes["enabled"] = fields["enabled"]
    with transaction() as s:
        found = _get(s, subscription_id)
        if found is None:
            return None
        return subscription_dict(subscriptions.change(s, found, **changes))


def delete(subscription_id: str) -> bool:
    parsed = _uuid(subscription_id)
    with transaction() as s:
        return parsed is not None and subscriptions.remove(s, parsed)


def rotate_secret(subscription_id: str) -> dict[str, Any] | None:
    """The subscription with its new `secret`, shown this once; the old one signs too
    until `previous_secret_expires_at`."""
    with transaction() as s:
        found = _get(s, subscription_id)
        if found is None:
            return None
        secret = subscriptions.rotate(s, config.current(), found)
        return {**subscription_dict(found), "secret": secret}


def delivery_log(
    subscription_id: str | None = None, status: str | None = None, limit: int = 50
) -> list[dict[str, Any]]:
    """Deliveries newest first, each with its attempts: of one subscription, or all;
    `status="exhausted"` lists the dead letters."""
    query = select(EventDelivery).order_by(EventDelivery.id.desc()).limit(min(limit, MAX_LISTED))
    if subscription_id is not None:
        query = query.where(EventDelivery.subscription_id == _uuid(subscription_id))
    if status is not None:
        query = query.where(EventDelivery.status == status)
    with transaction() as s:
        rows = s.scalars(query).all()
        attempts = _attempts(s, [row.id for row in rows])
        return [delivery_dict(row, attempts.get(row.id, [])) for row in rows]


def job_delivery_log(job_id: uuid.UUID, limit: int = 200) -> list[dict[str, Any]]:
    """The outgoing deliveries of one job's events, oldest first, each with its attempts."""
    query = (
        select(EventDelivery)
        .join(JobEvent, JobEvent.id == EventDelivery.event_id)
        .where(JobEvent.job_id == job_id)
        .order_by(EventDelivery.id)
        .limit(min(limit, MAX_LISTED))
    )
    with transaction() as s:
        rows = s.scalars(query).all()
        attempts = _attempts(s, [row.id for row in rows])
        return [delivery_dict(row, attempts.get(row.id, [])) for row in rows]


def counts() -> dict[str, int]:
    """How many deliveries are in each state (`exhausted`: the dead letters)."""
    with transaction() as s:
        rows = s.execute(select(EventDelivery.status, func.count()).group_by(EventDelivery.status)).all()
    return dict.fromkeys(DELIVERY_STATUSES, 0) | {row[0]: int(row[1]) for row in rows}


def _attempts(s: Any, delivery_ids: Sequence[int]) -> dict[int, list[DeliveryAttempt]]:
    found: dict[int, list[DeliveryAttempt]] = {}
    if delivery_ids:
        query = select(DeliveryAttempt).where(DeliveryAttempt.delivery_id.in_(delivery_ids))
        for attempt in s.scalars(query.order_by(DeliveryAttempt.id)):
            found.setdefault(attempt.delivery_id, []).append(attempt)
    return found


def replay_event(event_id: int, subscription_id: str | None = None) -> list[int] | None:
    """Send the event again to every enabled subscription that wants its type, or to one
    subscription (whatever it lists); None when the event or the subscription is unknown.
    Returns the deliveries' ids."""
    with transaction() as s:
        event = s.get(JobEvent, event_id)
        if event is None:
            return None
        if subscription_id is not None:
            one = _get(s, subscription_id)
            if one is None:
                return None
            targets = [one.id]
        else:
            type_ = outbox.type_of(event)
            targets = [
                sub.id for sub in deliveries.enabled_subscriptions(s) if outbox.wants(sub.events, type_)
            ]
        ids = deliveries.replay(s, event.id, targets)
        outbox.dispatch_after_commit(s, ids)
        return ids


def replay_since(subscription_id: str, since: datetime) -> int | None:
    """Every event since `since` the subscription wants (from before it existed too: the
    outbox keeps them all) gets a delivery again; None for an unknown subscription.
    Returns how many."""
    with transaction() as s:
        found = _get(s, subscription_id)
        if found is None:
            return None
        events = deliveries.events_since(s, since, MAX_REPLAYED)
        wanted = [e.id for e in events if outbox.wants(found.events, outbox.type_of(e))]
        ids = [i for event_id in wanted for i in deliveries.replay(s, event_id, [found.id])]
        outbox.dispatch_after_commit(s, ids)
        return len(ids)


def _get(s: Any, subscription_id: str) -> Subscription | None:
    parsed = _uuid(subscription_id)
    return subscriptions.get(s, parsed) if parsed is not None else None


def _uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None
