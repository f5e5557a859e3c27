"""Read and parse request bodies within limits, so bad input is a 4xx and never a 500.

Body size: werkzeug refuses a declared Content-Length over `max_content_length` before
reading a byte, but a body without one (chunked) it silently *truncates* at that length
(werkzeug 3.1 LimitedStream), which would turn an oversized body into a different,
shorter one. `read_body` reads one byte past the limit so it can tell, and answers 413.

JSON is parsed by falbridge.strict_json, which refuses what the database would (NaN,
NUL characters, deep nesting) and, counted while parsing, objects with too many keys and
arrays with too many items: here each refusal becomes its 4xx.
"""

from __future__ import annotations

from typing import Any

from flask import g, request
from werkzeug.exceptions import RequestEntityTooLarge

from falbridge import strict_json
from falbridge.webhooks.errors import ApiError


def read_body(limit: int, setting: str) -> bytes:
    """The whole body, or 413 (named after `setting`) as soon as it passes `limit` bytes."""
    g.body_limit = (limit, setting)  # for the 413 handler in webhooks.errors
    request.max_content_length = limit + 1
    body = request.get_data(cache=False)
    if len(body) > limit:
        raise RequestEntityTooLarge()
    return body


# strict_json's structure limits: the error code and the variable that sets each.
_STRUCTURE_LIMITS = {
    "too_deep": ("json_too_deep", "FALBRIDGE_MAX_JSON_DEPTH"),
    "too_many_keys": ("json_too_many_keys", "FALBRIDGE_MAX_JSON_KEYS"),
    "too_many_items": ("json_too_many_items", "FALBRIDGE_MAX_JSON_ITEMS"),
}


def parse_json(
    raw: bytes, *, max_depth: int, max_keys: int | None = None, max_items: int | None = None
) -> Any:
    """The body as strict JSON (falbridge.strict_json), or the 4xx naming what is wrong:
    a structure limit by its value and variable, as 422."""
    try:
        return strict_json.loads(
            raw, max_depth=max_depth, max_keys=max_keys, max_items=max_items, storable=True
        )
    except strict_json.JSONRejected as exc:
        if exc.problem == "invalid_json":
            raise ApiError(400, "invalid_json", f"request body is not valid JSON: {exc}") from None
        if exc.problem in _STRUCTURE_LIMITS:
            code, setting = _STRUCTURE_LIMITS[exc.problem]
            limit = {"too_deep": max_depth, "too_many_keys": max_keys, "too_many_items": max_items}
            details = {"limit": limit[exc.problem], "setting": setting}
            raise ApiError(422, code, f"{exc} ({setting})", details) from None
        name = strict_json.field_name(exc.path)
        raise ApiError(
            422, "invalid_request", f"{name}: {exc}", [{"field": name, "message": str(exc)}]
        ) from None
