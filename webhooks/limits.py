"""Read and parse request bodies within limits, so bad input is a 4xx and never a 500.

Body size: werkzeug refuses a declared Content-Length over `max_content_length` before
reading a byte, but a body without one (chunked) it silently *truncates* at that length
(werkzeug 3.1 LimitedStream), which would turn an oversized body into a different,
shorter one. `read_body` reads one byte past the limit so it can tell, and answers 413.

JSON is parsed by falbridge.strict_json, which refuses what the database would (NaN,
NUL characters, deep nesting): here each refusal becomes its 4xx.
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


def parse_json(raw: bytes, *, max_depth: int) -> Any:
    """The body as strict JSON (falbridge.strict_json), or the 4xx naming what is wrong."""
    try:
        return strict_json.loads(raw, max_depth=max_depth, storable=True)
    except strict_json.JSONRejected as exc:
        if exc.problem == "invalid_json":
            raise ApiError(400, "invalid_json", f"request body is not valid JSON: {exc}") from None
        if exc.problem == "too_deep":
            where = f" at {strict_json.field_name(exc.path)}" if exc.path else ""
            raise ApiError(
                422,
                "json_too_deep",
                f"JSON nesting deeper than {max_depth} levels{where} (FALBRIDGE_MAX_JSON_DEPTH)",
                {"limit": max_depth, "setting": "FALBRIDGE_MAX_JSON_DEPTH"},
            ) from None
        name = strict_json.field_name(exc.path)
        raise ApiError(
            422, "invalid_request", f"{name}: {exc}", [{"field": name, "message": str(exc)}]
        ) from None
