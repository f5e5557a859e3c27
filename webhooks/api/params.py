"""Reading /api requests: bodies and query parameters checked field by field, so every
problem is a 4xx naming the field (details [{"field", "message"}], the shape of
InputValidationError.errors: at most MAX_ERRORS_REPORTED of them, the message counting the
rest). The OpenAPI document states the same rules."""

from __future__ import annotations

import difflib
from datetime import UTC, datetime
from typing import Any

from flask import request
from werkzeug.datastructures import MultiDict

from falbridge import strict_json
from falbridge.models.listing import MAX_PAGE, CursorError, JobFilters, decode_cursor
from falbridge.models.states import ALL_STATUSES
from falbridge.webhooks import current
from falbridge.webhooks.api.schemas import MAX_CURSOR, MAX_EXTERNAL_ID, MAX_FILTER
from falbridge.webhooks.errors import ApiError
from falbridge.webhooks.limits import parse_json, read_body
from falbridge.worker.fal import validate_endpoint_id
from falbridge.worker.fal.inputs import KNOWN_ENDPOINTS, MAX_ERRORS_REPORTED, summarize_errors

DEFAULT_PAGE = 50
SUBMIT_FIELDS = ("endpoint_id", "input", "external_id", "metadata")
LIST_PARAMS = ("status", "endpoint_id", "external_id", "created_after", "created_before", "limit", "cursor")
_EARLIEST = datetime.min.replace(tzinfo=UTC)
_LATEST = datetime.max.replace(tzinfo=UTC)


def not_found(job_id: object) -> ApiError:
    return ApiError(404, "not_found", f"no job with id {str(job_id)[:64]!r}")


def json_object() -> dict[str, Any]:
    """The request body: a JSON object within the API's limits."""
    limits = current.config().api
    if not _is_json(request.mimetype):
        raise ApiError(
            415, "unsupported_media_type", "request body must be JSON: send Content-Type: application/json"
        )
    raw = read_body(limits.max_body_bytes, "FALBRIDGE_MAX_API_BODY_BYTES")
    body = parse_json(
        raw, max_depth=limits.max_json_depth, max_keys=limits.max_json_keys, max_items=limits.max_json_items
    )
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_json", f"request body must be a JSON object, got {_type(body)}")
    return body


def _is_json(mimetype: str) -> bool:
    return mimetype == "application/json" or (
        mimetype.startswith("application/") and mimetype.endswith("+json")
    )


def _check_sizes(fields: dict[str, Any]) -> None:
    limits = current.config().api
    for name, limit, setting in (
        ("input", limits.max_input_bytes, "FALBRIDGE_MAX_INPUT_BYTES"),
        ("metadata", limits.max_metadata_bytes, "FALBRIDGE_MAX_METADATA_BYTES"),
    ):
        if fields[name] is not None and strict_json.compact_size(fields[name]) > limit:
            raise ApiError(
                413,
                f"{name}_too_large",
                f"{name} is larger than the {limit}-byte limit (as compact JSON)",
                {"field": name, "limit_bytes": limit, "setting": setting},
            )


def submit_fields(body: dict[str, Any]) -> dict[str, Any]:
    errors = _unknown([name for name in body if name not in SUBMIT_FIELDS], SUBMIT_FIELDS, "field")
    endpoint_id, payload = body.get("endpoint_id"), body.get("input")
    external_id, metadata = body.get("external_id"), body.get("metadata")
    if not isinstance(endpoint_id, str):
        errors.append(_field("endpoint_id", _required_or_type(body, "endpoint_id", "a string")))
    elif len(endpoint_id) > MAX_FILTER:
        errors.append(_field("endpoint_id", f"must be at most {MAX_FILTER} characters long"))
    if not isinstance(payload, dict):
        errors.append(_field("input", _required_or_type(body, "input", "a JSON object")))
    if external_id is not None and not isinstance(external_id, str):
        errors.append(_field("external_id", f"must be a string (got {_type(external_id)})"))
    elif external_id is not None and not 1 <= len(external_id) <= MAX_EXTERNAL_ID:
        errors.append(_field("external_id", f"must be 1 to {MAX_EXTERNAL_ID} characters long"))
    if metadata is not None and not isinstance(metadata, dict):
        errors.append(_field("metadata", f"must be a JSON object or null (got {_type(metadata)})"))
    if errors:
        raise _invalid_request(errors)
    assert isinstance(endpoint_id, str) and isinstance(payload, dict)  # else an error was raised
    _check_sizes({"input": payload, "metadata": metadata})
    try:
        validate_endpoint_id(endpoint_id)
    except ValueError as exc:
        raise ApiError(422, "invalid_endpoint_id", str(exc), [_field("endpoint_id", str(exc))]) from None
    return {
        "endpoint_id": endpoint_id,
        "input": _json_integers(endpoint_id, payload),
        "external_id": external_id,
        "metadata": metadata,
    }


def _json_integers(endpoint_id: str, payload: dict[str, Any]) -> dict[str, Any]:
    """JSON has one number type: 5.0 is the integer 5 (JSON Schema agrees), but the typed
    inputs are strict models that refuse a float for an int field. Their fields are flat,
    and a strict float field still takes an int, so converting is safe there; pass-through
    inputs are left exactly as sent."""
    if endpoint_id not in KNOWN_ENDPOINTS:
        return payload
    return {k: int(v) if isinstance(v, float) and v.is_integer() else v for k, v in payload.items()}


def list_args(args: MultiDict[str, str]) -> tuple[JobFilters, int, str | None]:
    errors = _unknown([name for name in args if name not in LIST_PARAMS], LIST_PARAMS, "parameter")
    errors += [_field(name, "given more than once") for name in args if len(args.getlist(name)) > 1]
    # An empty value means "not given", as an HTML form would send it.
    value = {name: args.get(name) or None for name in LIST_PARAMS}
    for name in LIST_PARAMS:
        # NUL: PostgreSQL refuses it in a query parameter (a 500, not "no match").
        text = value[name]
        if text is not None and "\x00" in text:
            errors.append(_field(name, "must not contain a NUL character"))
            value[name] = None
    for name, most in (("endpoint_id", MAX_FILTER), ("external_id", MAX_FILTER), ("cursor", MAX_CURSOR)):
        text = value[name]
        if text is not None and len(text) > most:
            errors.append(_field(name, f"must be at most {most} characters long"))
            value[name] = None
    if value["status"] is not None and value["status"] not in ALL_STATUSES:
        errors.append(_field("status", f"must be one of {', '.join(ALL_STATUSES)}"))
    dates: dict[str, datetime | None] = {}
    for name in ("created_after", "created_before"):
        try:
            dates[name] = _parse_time(value[name])
        except ValueError:
            errors.append(_field(name, "must be an ISO-8601 date or time, e.g. 2024-05-01T12:00:00Z"))
    limit = _parse_limit(value["limit"], errors)
    if errors:
        raise _invalid_request(errors)
    if value["cursor"] is not None:
        _check_cursor(value["cursor"])
    filters = JobFilters(
        status=value["status"], endpoint_id=value["endpoint_id"], external_id=value["external_id"], **dates
    )
    return filters, limit, value["cursor"]


def _check_cursor(cursor: str) -> None:
    try:
        at, _ = decode_cursor(cursor)
        # The database layer converts to UTC; a crafted instant outside datetime's range
        # (year 1 with a positive offset) would overflow there, as a 500.
        at.astimezone(UTC)
    # AttributeError: decode_cursor lets a crafted cursor holding a number as the id through.
    # RecursionError: a crafted cursor can hold deeply nested JSON.
    except (CursorError, AttributeError, RecursionError, OverflowError):
        raise ApiError(
            422,
            "invalid_cursor",
            "cursor is not one this API issued",
            [_field("cursor", "not a cursor from a previous page")],
        ) from None


def _parse_limit(raw: str | None, errors: list[dict[str, str]]) -> int:
    # Only plain digits: int() would also take "+5", " 5" and "5_0".
    if raw is None:
        return DEFAULT_PAGE
    if raw.isascii() and raw.isdigit() and len(raw) <= 6 and 1 <= int(raw) <= MAX_PAGE:
        return int(raw)
    errors.append(_field("limit", f"must be an integer from 1 to {MAX_PAGE}"))
    return DEFAULT_PAGE


def _parse_time(raw: str | None) -> datetime | None:
    """ISO-8601; a time without an offset is taken as UTC."""
    if raw is None:
        return None
    at = datetime.fromisoformat(raw)
    if at.tzinfo is None:
        return at.replace(tzinfo=UTC)
    try:
        return at.astimezone(UTC)
    except OverflowError:
        # A valid instant just outside datetime's range (0001-01-01T00:00+05:00): as a
        # bound it means "since forever" or "until forever", so clamp rather than refuse.
        return _EARLIEST if at.year == 1 else _LATEST


def _field(name: str, message: str) -> dict[str, str]:
    return {"field": name, "message": message}


def _unknown(names: list[str], known: tuple[str, ...], noun: str) -> list[dict[str, str]]:
    """An error per name; a close match suggested only for the first ones by name, the only
    ones that can be reported (difflib is slow, and there may be thousands)."""
    errors = []
    # A key can be megabytes long: neither echo it nor diff it whole.
    for rank, name in enumerate(sorted(name[:64] for name in names)):
        close = difflib.get_close_matches(name, known, n=1) if rank < MAX_ERRORS_REPORTED else []
        errors.append(_field(name, f"unknown {noun}" + (f" (did you mean {close[0]!r}?)" if close else "")))
    return errors


def _required_or_type(body: dict[str, Any], name: str, expected: str) -> str:
    if name not in body:
        return "field required"
    return f"must be {expected} (got {_type(body[name])})"


def _invalid_request(errors: list[dict[str, str]]) -> ApiError:
    """422 with the first MAX_ERRORS_REPORTED errors by field, and a count of the rest."""
    shown = sorted(errors, key=lambda e: e["field"])[:MAX_ERRORS_REPORTED]
    return ApiError(422, "invalid_request", summarize_errors(shown, len(errors) - len(shown)), shown)


def _type(value: Any) -> str:
    # The type only, never the value: it may be a multi-megabyte data URI.
    names = {
        bool: "boolean",
        int: "integer",
        float: "number",
        str: "string",
        list: "array",
        dict: "object",
        type(None): "null",
    }
    return names.get(type(value), type(value).__name__)
