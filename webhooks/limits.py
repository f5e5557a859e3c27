"""Read and parse request bodies within limits, so bad input is a 4xx and never a 500.

Body size: werkzeug refuses a declared Content-Length over `max_content_length` before
reading a byte, but a body without one (chunked) it silently *truncates* at that length
(werkzeug 3.1 LimitedStream), which would turn an oversized body into a different,
shorter one. `read_body` reads one byte past the limit so it can tell, and answers 413.

What the standard library would let through and the database would then refuse (a 500
after the fact) is refused here first:
- nesting deeper than `max_depth` (Python's decoder itself raises RecursionError at
  about a thousand levels; that is caught too);
- NaN, Infinity and numbers that overflow to infinity (1e999): not JSON, and
  PostgreSQL's jsonb refuses them;
- NUL characters and unpaired surrogates (\\u0000, \\ud800) in any key or string:
  PostgreSQL can store neither, in text or in jsonb.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from flask import g, request
from werkzeug.exceptions import RequestEntityTooLarge

from falbridge.webhooks.errors import ApiError

# \x00 and any lone UTF-16 surrogate; a valid pair ("\ud83d\ude00") decodes to one code point.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def read_body(limit: int, setting: str) -> bytes:
    """The whole body, or 413 (named after `setting`) as soon as it passes `limit` bytes."""
    g.body_limit = (limit, setting)  # for the 413 handler in webhooks.errors
    request.max_content_length = limit + 1
    body = request.get_data(cache=False)
    if len(body) > limit:
        raise RequestEntityTooLarge()
    return body


def _reject_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:32]} is out of range")
    return value


def parse_json(raw: bytes, *, max_depth: int) -> Any:
    try:
        doc = json.loads(raw, parse_constant=_reject_constant, parse_float=_finite_float)
    except RecursionError:
        raise too_deep(max_depth) from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, the hooks above
        raise ApiError(400, "invalid_json", f"request body is not valid JSON: {_short(exc)}") from None
    check_tree(doc, max_depth=max_depth)
    return doc


def check_tree(doc: Any, *, max_depth: int) -> None:
    """Depth and storable strings, walked without recursion (the input may be huge)."""
    stack: list[tuple[Any, int, tuple]] = [(doc, 1, ())]
    while stack:
        value, depth, path = stack.pop()
        if isinstance(value, str):
            _check_text(value, path)
        elif isinstance(value, (dict, list)):
            if depth > max_depth:
                raise too_deep(max_depth, path)
            if isinstance(value, dict):
                for key, item in value.items():
                    _check_text(key, path + (key,))
                    if isinstance(item, (str, dict, list)):
                        stack.append((item, depth + 1, path + (key,)))
            else:
                for index, item in enumerate(value):
                    if isinstance(item, (str, dict, list)):
                        stack.append((item, depth + 1, path + (index,)))


def json_size(value: Any) -> int:
    """Bytes of `value` as compact UTF-8 JSON: what the database and fal will get."""
    return len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))


def too_deep(max_depth: int, path: tuple = ()) -> ApiError:
    where = f" at {field_name(path)}" if path else ""
    return ApiError(
        422,
        "json_too_deep",
        f"JSON nesting deeper than {max_depth} levels{where} (FALBRIDGE_MAX_JSON_DEPTH)",
        {"limit": max_depth, "setting": "FALBRIDGE_MAX_JSON_DEPTH"},
    )


def field_name(path: tuple) -> str:
    out = ""
    for part in path[:16]:  # a field path, not a dump of the document
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            name = _UNSTORABLE.sub("\ufffd", part[:64])  # the message itself must be clean
            out += f".{name}" if out else name
    return out or "(body)"


def _check_text(text: str, path: tuple) -> None:
    found = _UNSTORABLE.search(text)
    if found is not None:
        what = "a NUL character" if found.group() == "\x00" else "an unpaired UTF-16 surrogate"
        name = field_name(path)
        raise ApiError(
            422,
            "invalid_request",
            f"{name}: contains {what}, which cannot be stored",
            [{"field": name, "message": f"contains {what}, which cannot be stored"}],
        )


def _short(exc: Exception) -> str:
    # json's messages are short; a UnicodeDecodeError's can quote body bytes.
    return str(exc)[:200]
