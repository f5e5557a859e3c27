"""Outgoing webhooks from Python, in process (the database configured as for a worker):
the same calls as falbridge.Client's, answering the HTTP API's JSON shapes as dicts.

    made = falbridge.create_subscription("https://hooks.example.com/fal", ["job.completed"])
    made["secret"]        # whsec_...: shown this once; verify our signatures with it

Refusals raise falbridge.InvalidInput (`errors` names the field), DuplicateSubscription,
SubscriptionNotFound, EventNotFound.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

from falbridge.errors import DuplicateSubscription, EventNotFound, InvalidInput, SubscriptionNotFound
from falbridge.worker.notify import manage

T = TypeVar("T")


def create_subscription(url: str, events: Sequence[str], description: str | None = None) -> dict[str, Any]:
    """A new subscription with its `secret` (shown this once)."""
    return _checked(lambda: manage.create(url, list(events), description))


def subscriptions() -> list[dict[str, Any]]:
    return manage.listing()


def get_subscription(subscription_id: str) -> dict[str, Any]:
    return _found(manage.show(subscription_id), subscription_id)


def update_subscription(
    subscription_id: str,
    *,
    url: str | None = None,
    events: Sequence[str] | None = None,
    enabled: bool | None = None,
    description: str | None = None,
) -> dict[str, Any]:
    """Change the fields given; re-enabling clears why it was disabled."""
    fields: dict[str, Any] = {"url": url, "events": list(events) if events is not None else None}
    fields |= {"enabled": enabled, "description": description}
    return _found(_checked(lambda: manage.update(subscription_id, **fields)), subscription_id)


def delete_subscription(subscription_id: str) -> None:
    if not manage.delete(subscription_id):
        raise SubscriptionNotFound(subscription_id)


def rotate_secret(subscription_id: str) -> dict[str, Any]:
    """The subscription with its new `secret`; the old one signs too until
    `previous_secret_expires_at`."""
    return _found(manage.rotate_secret(subscription_id), subscription_id)


def event_deliveries(
    subscription_id: str | None = None, *, status: str | None = None, limit: int = 50
) -> list[dict[str, Any]]:
    """Deliveries newest first with their attempts; `status="exhausted"`: the dead letters."""
    if subscription_id is not None:
        get_subscription(subscription_id)
    return manage.delivery_log(subscription_id, status, limit)


def replay_event(event_id: str | int, subscription_id: str | None = None) -> list[int]:
    """Deliver one event again (to the subscriptions listing its type, or to one); the
    deliveries' ids."""
    number = str(event_id).removeprefix("evt_")
    ids = manage.replay_event(int(number), subscription_id) if number.isdigit() else None
    if ids is None:
        raise EventNotFound(str(event_id))
    return ids


def replay_subscription(subscription_id: str, since: datetime) -> int:
    """Deliver again every event since `since` the subscription lists; how many."""
    replayed = manage.replay_since(subscription_id, since)
    if replayed is None:
        raise SubscriptionNotFound(subscription_id)
    return replayed


def _checked(call: Callable[[], T]) -> T:
    try:
        return call()
    except manage.InvalidSubscription as exc:
        raise InvalidInput(str(exc), [{"field": exc.field, "message": exc.message}]) from None
    except manage.DuplicateSubscription as exc:
        raise DuplicateSubscription(str(exc), str(exc.existing)) from None


def _found(value: T | None, subscription_id: str) -> T:
    if value is None:
        raise SubscriptionNotFound(subscription_id)
    return value
