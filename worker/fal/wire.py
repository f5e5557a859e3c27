"""Building queue requests and reading their answers: the parts with no I/O."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import httpx
from pydantic import BaseModel

from falbridge.worker.fal.endpoints import fallback_queue_urls
from falbridge.worker.fal.errors import OutcomeUnknownError
from falbridge.worker.fal.records import Submission


def parse_submission(base_url: str, endpoint_id: str, response: httpx.Response) -> Submission:
    """Read a 2xx submit answer, filling any missing URL from the documented fallback."""
    body = json_or_none(response)
    body = body if isinstance(body, dict) else {}
    request_id = body.get("request_id") or response.headers.get("x-fal-request-id")
    if not isinstance(request_id, str) or not request_id.strip():
        # fal said yes but not to what: a job probably exists that we cannot address.
        raise OutcomeUnknownError(
            f"fal submit {endpoint_id}: HTTP {response.status_code} without a request_id",
            status_code=response.status_code,
        )
    fallback = fallback_queue_urls(base_url, endpoint_id, request_id)
    gateway_id = body.get("gateway_request_id")
    position = body.get("queue_position")
    return Submission(
        endpoint_id=endpoint_id,
        request_id=request_id,
        status_url=_str_field(body, "status_url") or fallback.status_url,
        response_url=_str_field(body, "response_url") or fallback.response_url,
        cancel_url=_str_field(body, "cancel_url") or fallback.cancel_url,
        gateway_request_id=gateway_id if isinstance(gateway_id, str) else "",
        queue_position=position if isinstance(position, int) and not isinstance(position, bool) else None,
    )


def checked_webhook_url(webhook_url: str) -> str:
    # urllib's split, not httpx.URL: this runs for every submit, and httpx's parser in
    # pure Python cost 2 % of the worker's CPU (bench/ profile). Spaces and controls are
    # refused here as httpx would refuse them.
    try:
        parts = urlsplit(webhook_url)
        host = parts.hostname
    except (ValueError, TypeError, AttributeError):
        parts, host = None, None
    if (
        parts is None
        or parts.scheme not in ("http", "https")
        or not host
        or any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in webhook_url)
    ):
        raise ValueError("webhook_url must be an absolute http(s) URL")
    return webhook_url


class LoggableTarget:
    """A request's path and its webhook's host, for a log line: query strings can carry
    tokens (a webhook URL often does). Worked out when a line is written, not before:
    parsing two URLs for every submit cost more than the submit's own bookkeeping, and
    these lines are debug ones."""

    def __init__(self, url: str, params: Mapping[str, str] | None) -> None:
        self._url = url
        self._params = params

    def __str__(self) -> str:
        path = httpx.URL(self._url).path
        webhook = (self._params or {}).get("fal_webhook")
        return f"{path} (webhook host {httpx.URL(webhook).host})" if webhook else path


def json_object(data: Mapping[str, Any] | BaseModel) -> dict[str, Any]:
    if isinstance(data, BaseModel):
        return data.model_dump(mode="json", exclude_unset=True)
    if not isinstance(data, Mapping):
        raise ValueError(f"input must be a JSON object, got {type(data).__name__}")
    return dict(data)


def json_or_none(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _str_field(body: Mapping[str, Any], name: str) -> str | None:
    value = body.get(name)
    return value if isinstance(value, str) and value else None
