"""Outgoing webhooks under /api: subscriptions (make, list, show, change, delete, rotate
the secret), their deliveries and the dead letters, and replays. Same token as the jobs
API (the app checks it for every /api path); same error envelope. A field that can't be
used is 400 naming it (`details: [{"field", "message"}]`); the same URL with the same
event types twice is 409. The secret is in the answers of POST /api/subscriptions and of
rotate-secret only."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify, request
from flask.typing import ResponseReturnValue

from falbridge.models.tables import DELIVERY_STATUSES
from falbridge.webhooks.api.list_query import parse_time
from falbridge.webhooks.api.params import field_error, json_object, unknown_names
from falbridge.webhooks.errors import ApiError
from falbridge.worker.notify import manage
from falbridge.worker.notify.manage import DuplicateSubscription, InvalidSubscription

subscriptions_api = Blueprint("subscriptions_api", __name__, url_prefix="/api")

CREATE_FIELDS = ("url", "events", "description")
UPDATE_FIELDS = ("url", "events", "enabled", "description")
MAX_LIMIT = 500


@subscriptions_api.post("/subscriptions")
def create_subscription() -> ResponseReturnValue:
    body = _fields(CREATE_FIELDS)
    made = _checked(lambda: manage.create(body.get("url"), body.get("events"), body.get("description")))
    return jsonify(made), 201, {"Location": f"/api/subscriptions/{made['id']}"}


@subscriptions_api.get("/subscriptions")
def list_subscriptions() -> ResponseReturnValue:
    _no_parameters()
    return jsonify({"subscriptions": manage.listing()})


@subscriptions_api.get("/subscriptions/<subscription_id>")
def show_subscription(subscription_id: str) -> ResponseReturnValue:
    return jsonify(_found(manage.show(subscription_id), subscription_id))


@subscriptions_api.patch("/subscriptions/<subscription_id>")
def update_subscription(subscription_id: str) -> ResponseReturnValue:
    body = _fields(UPDATE_FIELDS)
    for name, value in body.items():
        if value is None:  # null would mean "unchanged": refuse it rather than guess
            raise _invalid(InvalidSubscription(name, "must not be null (leave it out to keep it)"))
    if "enabled" in body and not isinstance(body["enabled"], bool):
        raise _invalid(InvalidSubscription("enabled", "must be true or false"))
    changed = _checked(lambda: manage.update(subscription_id, **body))
    return jsonify(_found(changed, subscription_id))


@subscriptions_api.delete("/subscriptions/<subscription_id>")
def delete_subscription(subscription_id: str) -> ResponseReturnValue:
    if not manage.delete(subscription_id):
        raise _not_found(subscription_id)
    return "", 204


@subscriptions_api.post("/subscriptions/<subscription_id>/rotate-secret")
def rotate_secret(subscription_id: str) -> ResponseReturnValue:
    return jsonify(_found(manage.rotate_secret(subscription_id), subscription_id))


@subscriptions_api.get("/subscriptions/<subscription_id>/deliveries")
def subscription_deliveries(subscription_id: str) -> ResponseReturnValue:
    _found(manage.show(subscription_id), subscription_id)
    status, limit = _log_query()
    return jsonify({"deliveries": manage.delivery_log(subscription_id, status, limit)})


@subscriptions_api.get("/event-deliveries")
def all_deliveries() -> ResponseReturnValue:
    """Every subscription's deliveries, newest first (`status=exhausted`: the dead
    letters), with how many there are in each state."""
    status, limit = _log_query()
    return jsonify({"deliveries": manage.delivery_log(None, status, limit), "counts": manage.counts()})


@subscriptions_api.post("/subscriptions/<subscription_id>/replay")
def replay_subscription(subscription_id: str) -> ResponseReturnValue:
    body = _fields(("since",))
    raw = body.get("since")
    try:
        since = parse_time(raw) if isinstance(raw, str) else None
    except ValueError:
        since = None
    if since is None:
        raise _invalid(InvalidSubscription("since", "must be an ISO-8601 time, e.g. 2026-11-30T08:00:00Z"))
    replayed = manage.replay_since(subscription_id, since)
    if replayed is None:
        raise _not_found(subscription_id)
    return jsonify({"subscription_id": subscription_id, "replayed": replayed}), 202


@subscriptions_api.post("/events/<event_id>/replay")
def replay_event(event_id: str) -> ResponseReturnValue:
    unknown = [name for name in request.args if name != "subscription"]
    if unknown:
        raise ApiError(
            400,
            "invalid_request",
            "unknown parameter",
            unknown_names(unknown, ("subscription",), "parameter"),
        )
    number = event_id.removeprefix("evt_")
    if not (number.isascii() and number.isdigit() and len(number) <= 18):
        raise ApiError(404, "not_found", f"no event with id {event_id[:64]!r}")
    ids = manage.replay_event(int(number), request.args.get("subscription"))
    if ids is None:
        raise ApiError(404, "not_found", f"no event {event_id[:64]!r}, or no such subscription")
    return jsonify({"event_id": f"evt_{int(number)}", "deliveries": ids}), 202


def _fields(known: tuple[str, ...]) -> dict[str, Any]:
    body = json_object()
    unknown = [name for name in body if name not in known]
    if unknown:
        raise ApiError(400, "invalid_request", "unknown field", unknown_names(unknown, known, "field"))
    return body


def _no_parameters() -> None:
    if request.args:
        raise ApiError(
            400, "invalid_request", "unknown parameter", unknown_names(list(request.args), (), "parameter")
        )


def _log_query() -> tuple[str | None, int]:
    unknown = [name for name in request.args if name not in ("status", "limit")]
    if unknown:
        raise ApiError(
            400,
            "invalid_request",
            "unknown parameter",
            unknown_names(unknown, ("status", "limit"), "parameter"),
        )
    status = request.args.get("status") or None
    if status is not None and status not in DELIVERY_STATUSES:
        raise _invalid(InvalidSubscription("status", f"must be one of {', '.join(DELIVERY_STATUSES)}"))
    raw = request.args.get("limit", "50")
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 6 and 1 <= int(raw) <= MAX_LIMIT):
        raise _invalid(InvalidSubscription("limit", f"must be an integer from 1 to {MAX_LIMIT}"))
    return status, int(raw)


def _checked(call: Any) -> Any:
    try:
        return call()
    except InvalidSubscription as exc:
        raise _invalid(exc) from None
    except DuplicateSubscription as exc:
        raise ApiError(
            409, "duplicate_subscription", str(exc), {"subscription_id": str(exc.existing)}
        ) from None


def _invalid(exc: InvalidSubscription) -> ApiError:
    return ApiError(
        400, "invalid_request", f"{exc.field}: {exc.message}", [field_error(exc.field, exc.message)]
    )


def _found(value: Any, subscription_id: str) -> Any:
    if value is None:
        raise _not_found(subscription_id)
    return value


def _not_found(subscription_id: str) -> ApiError:
    return ApiError(404, "not_found", f"no subscription with id {subscription_id[:64]!r}")
