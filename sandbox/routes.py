"""Endpoint ids, app ids and the queue URL shapes.

See docs/fal-protocol.md, "Model ids and the sub-path rule".
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Ids in these namespaces carry one extra leading segment: workflows/owner/app/...
NAMESPACES = frozenset({"workflows", "comfy"})
_LEGACY_APP = re.compile(r"(\d+)-([A-Za-z0-9._-]+)")
_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")


@dataclass(frozen=True)
class EndpointId:
    endpoint_id: str  # full id used on submit, e.g. fal-ai/florence-2-large/region-proposal
    app_id: str  # owner/app used by status/result/cancel, e.g. fal-ai/florence-2-large


def parse_endpoint_id(path: str) -> EndpointId | None:
    segments = path.strip("/").split("/")
    if any(not segment for segment in segments):
        return None
    legacy = _LEGACY_APP.fullmatch(segments[0]) if len(segments) == 1 else None
    if legacy:
        segments = [legacy.group(1), legacy.group(2)]
    head = 1 if segments[0] in NAMESPACES else 0
    if len(segments) < head + 2:
        return None
    return EndpointId("/".join(segments), "/".join(segments[: head + 2]))


@dataclass(frozen=True)
class RequestRoute:
    app_path: str  # whatever the caller put before /requests/
    request_id: str
    action: str  # "status", "result" or "cancel"


_TAIL_ACTIONS = {"status": "status", "response": "result", "cancel": "cancel"}


def match_request_route(path: str) -> RequestRoute | None:
    """Recognise `{app}/requests/{id}[/status|/response|/cancel]`."""
    segments = path.strip("/").split("/")
    if len(segments) >= 4 and segments[-3] == "requests" and segments[-1] in _TAIL_ACTIONS:
        app_segments, request_id, action = segments[:-3], segments[-2], _TAIL_ACTIONS[segments[-1]]
    elif len(segments) >= 3 and segments[-2] == "requests":
        app_segments, request_id, action = segments[:-2], segments[-1], "result"
    else:
        return None
    if not _REQUEST_ID.fullmatch(request_id) or any(not s for s in app_segments):
        return None
    return RequestRoute("/".join(app_segments), request_id, action)


def queue_urls(base_url: str, app_id: str, request_id: str) -> dict[str, str]:
    # The older documented response_url shape (no /response suffix); both are served.
    root = f"{base_url}/{app_id}/requests/{request_id}"
    return {
        "status_url": f"{root}/status",
        "response_url": root,
        "cancel_url": f"{root}/cancel",
    }
