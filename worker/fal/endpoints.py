"""Endpoint ids and the queue URLs derived from them.

See docs/fal-protocol.md, "Model ids and the sub-path rule".

Submit uses the full endpoint id; status, result and cancel live under ``owner/app``
only (plus a namespace prefix for ``workflows/`` and ``comfy/``). These builders are a
fallback: the URLs fal returns at submit time are authoritative and used verbatim.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote

# Ids with these first segments carry one extra leading segment before owner/app.
APP_NAMESPACES = frozenset({"workflows", "comfy"})

# Conservative on purpose: the id becomes part of a URL path, so anything that could
# change the path's meaning ("..", "?", "#", "%", "://", whitespace) is refused.
_SEGMENT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*")


@dataclass(frozen=True)
class QueueUrls:
    status_url: str
    response_url: str
    cancel_url: str


def validate_endpoint_id(endpoint_id: object) -> str:
    """Return ``endpoint_id`` unchanged if it is ``owner/app[/path...]``, else ValueError."""
    if not isinstance(endpoint_id, str):
        raise ValueError(f"endpoint id must be a string, got {type(endpoint_id).__name__}")
    if not endpoint_id:
        raise ValueError("endpoint id is empty; expected 'owner/app[/path...]'")
    if "://" in endpoint_id:
        raise ValueError(
            f"endpoint id {endpoint_id!r} looks like a URL; pass only 'owner/app[/path...]', "
            "the queue base URL is configured separately"
        )
    segments = endpoint_id.split("/")
    minimum = 3 if segments[0] in APP_NAMESPACES else 2
    if len(segments) < minimum:
        shape = "namespace/owner/app" if minimum == 3 else "owner/app"
        raise ValueError(f"endpoint id {endpoint_id!r} must have the form '{shape}[/path...]'")
    for position, segment in enumerate(segments, start=1):
        if not segment:
            raise ValueError(f"endpoint id {endpoint_id!r} has an empty segment at position {position}")
        if segment in (".", ".."):
            raise ValueError(f"endpoint id {endpoint_id!r} contains a {segment!r} segment")
        if not _SEGMENT.fullmatch(segment):
            raise ValueError(
                f"endpoint id {endpoint_id!r}: segment {segment!r} may only contain letters, "
                "digits, '.', '_' and '-'"
            )
    return endpoint_id


def app_id_of(endpoint_id: str) -> str:
    """The ``[namespace/]owner/app`` part of an endpoint id, used by status/result/cancel."""
    segments = validate_endpoint_id(endpoint_id).split("/")
    width = 3 if segments[0] in APP_NAMESPACES else 2
    return "/".join(segments[:width])


def fallback_queue_urls(base_url: str, endpoint_id: str, request_id: str) -> QueueUrls:
    """Build the documented URLs for a request when the stored ones are missing."""
    request_path = f"{base_url.rstrip('/')}/{app_id_of(endpoint_id)}/requests/{quote_request_id(request_id)}"
    return QueueUrls(
        status_url=f"{request_path}/status",
        response_url=request_path,
        cancel_url=f"{request_path}/cancel",
    )


def quote_request_id(request_id: object) -> str:
    """Percent-encode a request id for a path, refusing ids that could escape it."""
    if not isinstance(request_id, str) or not request_id.strip():
        raise ValueError("request id must be a non-empty string")
    if request_id in (".", ".."):
        raise ValueError(f"request id {request_id!r} is not a valid id")
    return quote(request_id, safe="")
