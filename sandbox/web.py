"""Small HTTP helpers shared by the queue API and the admin API."""

from __future__ import annotations

import json
from typing import Any

from werkzeug.wrappers import Request, Response


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        json.dumps(body, separators=(",", ":")),
        status=status,
        headers=headers,
        content_type="application/json",
    )


def detail(message: str, status: int) -> Response:
    return json_response({"detail": message}, status)


def validation_error(loc: list[str], msg: str, kind: str, status: int = 422) -> Response:
    return json_response({"detail": [{"loc": loc, "msg": msg, "type": kind}]}, status)


def read_json(request: Request) -> tuple[bool, Any]:
    """(True, value) for a JSON body, (False, error message) otherwise."""
    try:
        return True, json.loads(request.get_data(cache=True) or b"null")
    except (ValueError, UnicodeDecodeError) as exc:
        return False, str(exc)


def parse_bool(text: str | None) -> bool | None:
    """Query booleans as both official clients send them (1/0, true/false); None if invalid."""
    if text is None:
        return False
    return {
        "1": True,
        "true": True,
        "yes": True,
        "on": True,
        "0": False,
        "false": False,
        "no": False,
        "off": False,
    }.get(text.strip().lower())
