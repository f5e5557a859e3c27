"""The outgoing-webhook routes of the OpenAPI document (webhooks.api.subscriptions):
their paths and shapes, which openapi.py merges into the one document."""

from __future__ import annotations

from typing import Any

from falbridge.models.outbox import EVENT_TYPES
from falbridge.models.tables import DELIVERY_STATUSES
from falbridge.webhooks.api.schemas import INT, NO_NUL, TEXT, TIME, nullable, object_schema, ref
from falbridge.worker.notify.address import MAX_URL_LENGTH, URL_SHAPE
from falbridge.worker.notify.manage import MAX_DESCRIPTION, MAX_EVENTS

URL = {"type": "string", "maxLength": MAX_URL_LENGTH, "pattern": URL_SHAPE}
EVENTS = {
    "type": "array",
    "minItems": 1,
    "maxItems": MAX_EVENTS,
    "items": {"type": "string", "enum": list(EVENT_TYPES)},
}
DESCRIPTION = {"type": "string", "maxLength": MAX_DESCRIPTION, "pattern": NO_NUL}

SUBSCRIPTION = {
    "id": {"type": "string", "format": "uuid"},
    "url": TEXT,
    "events": {"type": "array", "items": {"type": "string", "enum": list(EVENT_TYPES)}},
    "description": nullable(TEXT),
    "enabled": {"type": "boolean"},
    "disabled_reason": nullable(TEXT),
    "failing_since": {"type": ["string", "null"], "format": "date-time"},
    "previous_secret_expires_at": {"type": ["string", "null"], "format": "date-time"},
    "created_at": TIME,
    "updated_at": TIME,
}
SECRET = {"type": "string", "pattern": "^whsec_[A-Za-z0-9+/=]+$", "description": "shown this once"}
ATTEMPT = {
    "at": TIME,
    "status_code": nullable(INT),
    "latency_ms": INT,
    "response_head": nullable(TEXT),
    "error": nullable(TEXT),
}
DELIVERY = {
    "id": INT,
    "event_id": INT,
    "subscription_id": {"type": ["string", "null"], "format": "uuid"},
    "target": {
        "type": "string",
        "enum": ["subscription", "notify_url", "on_complete"],
        "description": "a subscription's, or one of the job's own callbacks (subscription_id null)",
    },
    "status": {"type": "string", "enum": list(DELIVERY_STATUSES)},
    "attempts": INT,
    "next_attempt_at": {"type": ["string", "null"], "format": "date-time"},
    "last_status_code": nullable(INT),
    "last_error": nullable(TEXT),
    "created_at": TIME,
    "delivered_at": {"type": ["string", "null"], "format": "date-time"},
    "attempt_log": {"type": "array", "items": ref("DeliveryAttempt")},
}


def schemas() -> dict[str, Any]:
    return {
        "SubscriptionRequest": object_schema(
            {"url": URL, "events": EVENTS, "description": {**DESCRIPTION, "type": ["string", "null"]}},
            required=["url", "events"],
        ),
        "SubscriptionChange": object_schema(
            {"url": URL, "events": EVENTS, "enabled": {"type": "boolean"}, "description": DESCRIPTION},
            required=[],
        ),
        "Subscription": object_schema(SUBSCRIPTION),
        "SubscriptionWithSecret": object_schema({**SUBSCRIPTION, "secret": SECRET}),
        "SubscriptionList": object_schema({"subscriptions": {"type": "array", "items": ref("Subscription")}}),
        "Delivery": object_schema(DELIVERY),
        "DeliveryAttempt": object_schema(ATTEMPT),
        "DeliveryList": object_schema({"deliveries": {"type": "array", "items": ref("Delivery")}}),
        "DeliveryOverview": object_schema(
            {
                "deliveries": {"type": "array", "items": ref("Delivery")},
                "counts": object_schema(dict.fromkeys(DELIVERY_STATUSES, INT)),
            }
        ),
        "ReplaySince": object_schema({"since": TIME}),
        "EventReplayed": object_schema({"event_id": TEXT, "deliveries": {"type": "array", "items": INT}}),
        "SubscriptionReplayed": object_schema({"subscription_id": TEXT, "replayed": INT}),
    }


def _json(schema: str) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": ref(schema)}}}


def _answer(description: str, schema: str) -> dict[str, Any]:
    return {"description": description, **_json(schema)}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


_ID = {
    "name": "subscription_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "format": "uuid"},
}
_EVENT_ID = {
    "name": "event_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": "^(evt_)?[0-9]{1,18}$"},
    "description": "an event's id as webhook-id shows it (evt_<n>), or its number",
}
_LOG = [
    _query("status", {"type": "string", "enum": ["", *DELIVERY_STATUSES]}, "only deliveries in this state"),
    _query(
        "limit", {"type": "integer", "minimum": 1, "maximum": 500, "default": 50}, "how many, newest first"
    ),
]


def paths(error: Any, common: dict[str, Any]) -> dict[str, Any]:
    """`error(description)`: the error answer; `common`: what every route may answer."""
    bad, missing = (
        error("a field or parameter can't be used (named in details)"),
        error("no such subscription"),
    )
    body = {"400": bad, "413": error("body over its size limit"), "415": error("not application/json")}
    return {
        "/api/subscriptions": {
            "post": {
                "operationId": "createSubscription",
                "summary": "Subscribe a URL to job events; the answer holds the signing secret, once",
                "requestBody": {"required": True, **_json("SubscriptionRequest")},
                "responses": {
                    "201": _answer("subscribed", "SubscriptionWithSecret"),
                    "409": error("this URL already gets these event types"),
                    "422": error("the JSON is nested too deep or too big"),
                    **body,
                    **common,
                },
            },
            "get": {
                "operationId": "listSubscriptions",
                "summary": "Every subscription (no secrets)",
                "responses": {"200": _answer("all of them", "SubscriptionList"), "400": bad, **common},
            },
        },
        "/api/subscriptions/{subscription_id}": {
            "get": {
                "operationId": "getSubscription",
                "parameters": [_ID],
                "responses": {"200": _answer("the subscription", "Subscription"), "404": missing, **common},
            },
            "patch": {
                "operationId": "updateSubscription",
                "summary": "Change url, events, enabled or description (re-enabling clears the reason)",
                "parameters": [_ID],
                "requestBody": {"required": True, **_json("SubscriptionChange")},
                "responses": {
                    "200": _answer("changed", "Subscription"),
                    "404": missing,
                    "409": error("another subscription already sends these event types to this URL"),
                    "422": error("the JSON is nested too deep or too big"),
                    **body,
                    **common,
                },
            },
            "delete": {
                "operationId": "deleteSubscription",
                "parameters": [_ID],
                "responses": {
                    "204": {"description": "deleted, with its deliveries"},
                    "404": missing,
                    **common,
                },
            },
        },
        "/api/subscriptions/{subscription_id}/rotate-secret": {
            "post": {
                "operationId": "rotateSubscriptionSecret",
                "summary": "A new secret, shown once; the old one signs too until it expires",
                "parameters": [_ID],
                "responses": {"200": _answer("rotated", "SubscriptionWithSecret"), "404": missing, **common},
            },
        },
        "/api/subscriptions/{subscription_id}/deliveries": {
            "get": {
                "operationId": "listSubscriptionDeliveries",
                "parameters": [_ID, *_LOG],
                "responses": {
                    "200": _answer("newest first, each with its attempts", "DeliveryList"),
                    "400": bad,
                    "404": missing,
                    **common,
                },
            },
        },
        "/api/subscriptions/{subscription_id}/replay": {
            "post": {
                "operationId": "replaySubscription",
                "summary": "Deliver again every event since a time that the subscription lists",
                "parameters": [_ID],
                "requestBody": {"required": True, **_json("ReplaySince")},
                "responses": {
                    "202": _answer("deliveries made, on their way", "SubscriptionReplayed"),
                    "404": missing,
                    "422": error("the JSON is nested too deep or too big"),
                    **body,
                    **common,
                },
            },
        },
        "/api/event-deliveries": {
            "get": {
                "operationId": "listDeliveries",
                "summary": "All deliveries (status=exhausted: the dead letters), counted by state",
                "parameters": _LOG,
                "responses": {"200": _answer("newest first", "DeliveryOverview"), "400": bad, **common},
            },
        },
        "/api/events/{event_id}/replay": {
            "post": {
                "operationId": "replayEvent",
                "summary": "Deliver one event again to the subscriptions that list its type, or to one",
                "parameters": [
                    _EVENT_ID,
                    _query("subscription", {"type": "string", "format": "uuid"}, "only to this subscription"),
                ],
                "responses": {
                    "202": _answer("deliveries made, on their way", "EventReplayed"),
                    "400": bad,
                    "404": error("no such event, or no such subscription"),
                    **common,
                },
            },
        },
    }
