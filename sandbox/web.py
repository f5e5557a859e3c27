"""Small HTTP helpers shared by the queue API and the admin API."""

from __future__ import annotations

import json
import re
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


_FORWARDED_SCHEMES = ("http", "https")
_HOST = re.compile(r"[A-Za-z0-9.-]+(:\d{1,5})?|\[[0-9A-Fa-f:.]+\](:\d{1,5})?")


def public_base_url(request: Request, public_url: str | None) -> str:
    """The scheme://host[:port] a caller reached us by, for the URLs we hand back.

    A TLS front sets X-Forwarded-Proto/-Host; without them a client behind TLS would be
    handed http:// URLs it cannot follow. A configured public URL wins over both.
    """
    if public_url:
        return public_url.rstrip("/")
    proto = _first(request.headers.get("X-Forwarded-Proto")).lower()
    host = _first(request.headers.get("X-Forwarded-Host"))
    scheme = proto if proto in _FORWARDED_SCHEMES else request.scheme
    if not host or not _HOST.fullmatch(host):
        host = request.host
    return f"{scheme}://{host}"


def _first(value: str | None) -> str:
    # A chain of proxies appends; the first entry is what the client used.
    return (value or "").split(",")[0].strip()


def check_fal_auth(request: Request, allowed_keys: Any) -> Response | None:
    """fal's two credentials: `Key <FAL_KEY>`, or `Bearer <token>` as after `fal auth login`."""
    scheme, _, key = request.headers.get("Authorization", "").partition(" ")
    key = key.strip()
    if scheme.lower() not in ("key", "bearer") or not key:
        return detail(
            "Missing or malformed Authorization header; expected 'Key <FAL_KEY>' or 'Bearer <token>'", 401
        )
    if allowed_keys is not None and key not in allowed_keys:
        return detail("No user found for Key ID and Secret", 401)
    return None
