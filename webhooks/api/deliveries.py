"""The inbox under /api: fal's stored callbacks ("deliveries"), listed, shown and
re-applied. The same bearer token as the jobs API (webhooks.app checks every /api path),
the same error shape: a 422 naming each bad parameter, a 404 for an unknown id.

    GET  /api/deliveries                   newest first; request_id, job_id, processed, outcome
    GET  /api/deliveries/<id>              one delivery with its body
    POST /api/deliveries/<id>/reapply      apply it now, unless it was processed already
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

from flask import Blueprint, jsonify, request
from flask.typing import ResponseReturnValue
from werkzeug.datastructures import MultiDict

from falbridge.models.db import transaction
from falbridge.models.deliveries import (
    MAX_DELIVERY_ID,
    MAX_PAGE,
    OUTCOMES,
    CursorError,
    DeliveryFilters,
    decode_cursor,
    delivery_detail,
    delivery_summary,
    get_delivery,
    list_deliveries,
)
from falbridge.webhooks.api.params import field_error, invalid_request, unknown_names
from falbridge.webhooks.api.schemas import MAX_CURSOR
from falbridge.webhooks.errors import ApiError
from falbridge.worker import actions

deliveries = Blueprint("deliveries", __name__, url_prefix="/api/deliveries")

DEFAULT_PAGE = 50
MAX_REQUEST_ID = 128  # webhook_deliveries.request_id is VARCHAR(128)
LIST_PARAMS = ("request_id", "job_id", "processed", "outcome", "limit", "cursor")
UUID_PATTERN = r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}"
_UUID = re.compile(UUID_PATTERN)
_PROCESSED = {"true": True, "false": False}


@deliveries.get("")
def list_all() -> ResponseReturnValue:
    query = _list_query(request.args)
    with transaction() as s:
        rows, next_cursor = list_deliveries(s, query.filters, limit=query.limit, cursor=query.cursor)
        page = [delivery_summary(row) for row in rows]
    return jsonify({"deliveries": page, "next_cursor": next_cursor})


@deliveries.get("/<delivery_id>")
def show(delivery_id: str) -> ResponseReturnValue:
    return jsonify(_detail(_parse_id(delivery_id)))


@deliveries.post("/<delivery_id>/reapply")
def reapply(delivery_id: str) -> ResponseReturnValue:
    number = _parse_id(delivery_id)
    reapplied = actions.reapply_delivery(number)
    if reapplied is None:
        raise not_found(number)
    return jsonify({"outcome": reapplied.outcome, "delivery": _detail(number)})


def not_found(delivery_id: object) -> ApiError:
    return ApiError(404, "not_found", f"no delivery with id {str(delivery_id)[:64]!r}")


def _detail(delivery_id: int) -> dict[str, object]:
    with transaction() as s:
        delivery = get_delivery(s, delivery_id)
        if delivery is None:
            raise not_found(delivery_id)
        return delivery_detail(delivery)


def _parse_id(text: str) -> int:
    """A delivery id is a positive integer (plain digits) that a BIGINT can hold."""
    if text.isascii() and text.isdigit() and len(text) <= 19 and 1 <= int(text) <= MAX_DELIVERY_ID:
        return int(text)
    message = f"must be an integer from 1 to {MAX_DELIVERY_ID}"
    raise ApiError(422, "invalid_request", f"delivery_id {message}", [field_error("delivery_id", message)])


@dataclass(frozen=True)
class ListQuery:
    filters: DeliveryFilters
    limit: int
    cursor: str | None


def _list_query(args: MultiDict[str, str]) -> ListQuery:
    errors = unknown_names([name for name in args if name not in LIST_PARAMS], LIST_PARAMS, "parameter")
    errors += [field_error(name, "given more than once") for name in args if len(args.getlist(name)) > 1]
    # An empty value means "not given", as an HTML form would send it (as for /api/jobs).
    value = {name: args.get(name) or None for name in LIST_PARAMS}
    for name in LIST_PARAMS:
        text = value[name]
        if text is not None and "\x00" in text:  # PostgreSQL refuses NUL in a parameter
            errors.append(field_error(name, "must not contain a NUL character"))
            value[name] = None
    for name, most in (("request_id", MAX_REQUEST_ID), ("cursor", MAX_CURSOR)):
        text = value[name]
        if text is not None and len(text) > most:
            errors.append(field_error(name, f"must be at most {most} characters long"))
            value[name] = None
    job_id = value["job_id"]
    if job_id is not None and not _UUID.fullmatch(job_id):
        errors.append(field_error("job_id", "must be a full job id (a UUID, e.g. from GET /api/jobs)"))
    if value["processed"] is not None and value["processed"] not in _PROCESSED:
        errors.append(field_error("processed", "must be true or false"))
    if value["outcome"] is not None and value["outcome"] not in OUTCOMES:
        errors.append(field_error("outcome", f"must be one of {', '.join(OUTCOMES)}"))
    limit = _parse_limit(value["limit"], errors)
    if errors:
        raise invalid_request(errors)
    cursor = value["cursor"]
    if cursor is not None:
        try:
            decode_cursor(cursor)
        except CursorError:
            raise ApiError(
                422,
                "invalid_cursor",
                "cursor is not one this API issued",
                [field_error("cursor", "not a cursor from a previous page")],
            ) from None
    filters = DeliveryFilters(
        request_id=value["request_id"],
        job_id=uuid.UUID(job_id) if job_id is not None else None,
        processed=_PROCESSED[value["processed"]] if value["processed"] is not None else None,
        outcome=value["outcome"],
    )
    return ListQuery(filters, limit, cursor)


def _parse_limit(raw: str | None, errors: list[dict[str, str]]) -> int:
    if raw is None:
        return DEFAULT_PAGE
    if raw.isascii() and raw.isdigit() and len(raw) <= 6 and 1 <= int(raw) <= MAX_PAGE:
        return int(raw)
    errors.append(field_error("limit", f"must be an integer from 1 to {MAX_PAGE}"))
    return DEFAULT_PAGE
