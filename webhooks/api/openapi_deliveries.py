"""The inbox routes (webhooks/api/deliveries.py) in the OpenAPI document: their parameters,
answers and shapes. The shapes are models/deliveries.py field for field; webhooks/api/
openapi.py adds these paths and schemas to the document it assembles."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from falbridge.models.deliveries import MAX_DELIVERY_ID, MAX_PAGE, OUTCOMES
from falbridge.webhooks.api.deliveries import MAX_REQUEST_ID, UUID_PATTERN
from falbridge.webhooks.api.schemas import (
    ANY,
    BOOL,
    INT,
    MAX_CURSOR,
    NO_NUL,
    TEXT,
    TIME,
    nullable,
    object_schema,
    ref,
)
from falbridge.worker.apply.reapply import ALREADY_PROCESSED

# What applying an unprocessed delivery can do (a rejected one is processed already).
APPLY_OUTCOMES = [outcome for outcome in OUTCOMES if outcome != "rejected"]

DELIVERY_SUMMARY = {
    "id": INT,
    "request_id": nullable(TEXT),
    "job_id": {"type": ["string", "null"], "format": "uuid"},
    "received_at": TIME,
    "verified": BOOL,
    "rejected_as": nullable(TEXT),
    "redeliveries": INT,
    "body_length": nullable(INT),
    "processed": BOOL,
    "processed_at": nullable(TIME),
    "outcome": {"type": ["string", "null"], "enum": [*OUTCOMES, None]},
    "processing_error": nullable(TEXT),
}
DELIVERY_DETAIL = {
    **DELIVERY_SUMMARY,
    "rejection_reason": nullable(TEXT),
    "body_sha256": nullable(TEXT),
    # The callback's own `status` (fal says OK or ERROR), when the body has one.
    "payload_status": nullable(TEXT),
    # The body as JSON when it is strict JSON; else null, and the body as text in body_text.
    "body": ANY,
    "body_text": nullable(TEXT),
}

_DELIVERY_ID = {
    "name": "delivery_id",
    "in": "path",
    "required": True,
    "schema": {"type": "integer", "minimum": 1, "maximum": MAX_DELIVERY_ID},
    "description": "a delivery's id, as the listing shows it",
}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


_LIST_PARAMETERS = [
    # "" counts as not given (as an HTML form sends it), so it is part of each schema.
    _query(
        "request_id",
        {"type": "string", "maxLength": MAX_REQUEST_ID, "pattern": NO_NUL},
        "fal's request id, exact match",
    ),
    _query(
        "job_id",
        {"anyOf": [{"type": "string", "pattern": f"^{UUID_PATTERN}$"}, {"const": ""}]},
        "the job a delivery was applied to (a full job id)",
    ),
    _query(
        "processed",
        {"type": "string", "enum": ["", "true", "false"]},
        "true: only deliveries processed (applied, or found to change nothing, or rejected); "
        "false: only those waiting to be applied",
    ),
    _query("outcome", {"type": "string", "enum": ["", *OUTCOMES]}, "only deliveries with this outcome"),
    _query(
        "limit",
        {"anyOf": [{"type": "integer", "minimum": 1, "maximum": MAX_PAGE}, {"const": ""}], "default": 50},
        "page size",
    ),
    _query(
        "cursor",
        {"type": "string", "maxLength": MAX_CURSOR, "pattern": NO_NUL},
        "`next_cursor` of the previous page; anything else is 422",
    ),
]


def delivery_paths(
    ok: Callable[[str, str], dict[str, Any]],
    error: Callable[[str], dict[str, Any]],
    common: dict[str, Any],
) -> dict[str, Any]:
    """The inbox's paths; `ok`, `error` and `common` build answers as the rest of the document does."""
    bad_id = error("delivery_id is not an integer from 1 to 2^63-1")
    return {
        "/api/deliveries": {
            "get": {
                "operationId": "listDeliveries",
                "summary": "List fal's stored callbacks (deliveries), newest first",
                "parameters": _LIST_PARAMETERS,
                "responses": {
                    "200": ok("one page", "DeliveryPage"),
                    "422": error("an unknown or invalid parameter"),
                    **common,
                },
            },
        },
        "/api/deliveries/{delivery_id}": {
            "get": {
                "operationId": "getDelivery",
                "summary": "One stored callback, with its body",
                "parameters": [_DELIVERY_ID],
                "responses": {
                    "200": ok("the delivery", "DeliveryDetail"),
                    "404": error("no such delivery"),
                    "422": bad_id,
                    **common,
                },
            },
        },
        "/api/deliveries/{delivery_id}/reapply": {
            "post": {
                "operationId": "reapplyDelivery",
                "summary": "Apply a stored callback now, unless it was processed already",
                "description": "An unprocessed delivery is applied as a worker would apply it; one "
                f"processed already is left as it is and the outcome says `{ALREADY_PROCESSED}`.",
                "parameters": [_DELIVERY_ID],
                "responses": {
                    "200": ok("what re-applying did, and the delivery now", "ReapplyResult"),
                    "404": error("no such delivery"),
                    "422": bad_id,
                    **common,
                },
            },
        },
    }


def delivery_schemas() -> dict[str, Any]:
    return {
        "DeliverySummary": object_schema(DELIVERY_SUMMARY),
        "DeliveryDetail": object_schema(DELIVERY_DETAIL),
        "DeliveryPage": object_schema(
            {"deliveries": {"type": "array", "items": ref("DeliverySummary")}, "next_cursor": nullable(TEXT)}
        ),
        "ReapplyResult": object_schema(
            {
                "outcome": {"type": "string", "enum": [ALREADY_PROCESSED, *APPLY_OUTCOMES]},
                "delivery": ref("DeliveryDetail"),
            }
        ),
    }
