"""Values exchanged with ``QueueClient``: submit options, request references, statuses."""

from __future__ import annotations

import enum
import json
import math
from dataclasses import dataclass
from typing import Any, Literal, Protocol

QUEUE_STATUSES = ("IN_QUEUE", "IN_PROGRESS", "COMPLETED")


class RequestRefLike(Protocol):
    """Anything that identifies a queued request; ``Submission`` and ``RequestRef`` do.

    Read-only members, so that frozen dataclasses qualify.
    """

    @property
    def endpoint_id(self) -> str: ...

    @property
    def request_id(self) -> str: ...


@dataclass(frozen=True)
class RequestRef:
    """A request as persisted by the worker. Stored URLs win over rebuilt ones."""

    endpoint_id: str
    request_id: str
    status_url: str | None = None
    response_url: str | None = None
    cancel_url: str | None = None


@dataclass(frozen=True)
class Submission:
    """What fal answered to a submit. ``request_id`` is the id to key everything on."""

    endpoint_id: str
    request_id: str
    status_url: str
    response_url: str
    cancel_url: str
    gateway_request_id: str = ""
    queue_position: int | None = None

    def __post_init__(self) -> None:
        if not self.gateway_request_id:
            object.__setattr__(self, "gateway_request_id", self.request_id)

    def ref(self) -> RequestRef:
        return RequestRef(
            self.endpoint_id, self.request_id, self.status_url, self.response_url, self.cancel_url
        )


@dataclass(frozen=True)
class QueueStatus:
    """One status poll. ``status`` is kept verbatim even if fal invents a new value.

    A failed job is ``COMPLETED`` with ``error``/``error_type`` set (fal has no FAILED).
    """

    status: str
    http_status: int
    request_id: str | None = None
    queue_position: int | None = None
    logs: tuple[dict[str, Any], ...] | None = None
    metrics: dict[str, Any] | None = None
    error: str | None = None
    error_type: str | None = None
    status_url: str | None = None
    response_url: str | None = None
    cancel_url: str | None = None

    @property
    def is_completed(self) -> bool:
        return self.status == "COMPLETED"

    @property
    def is_failed(self) -> bool:
        return self.is_completed and (self.error is not None or self.error_type is not None)

    @classmethod
    def from_body(cls, body: dict[str, Any], http_status: int) -> QueueStatus:
        logs = body.get("logs")
        return cls(
            status=str(body["status"]),
            http_status=http_status,
            request_id=_str_or_none(body.get("request_id")),
            queue_position=_int_or_none(body.get("queue_position")),
            logs=tuple(e for e in logs if isinstance(e, dict)) if isinstance(logs, list) else None,
            metrics=body.get("metrics") if isinstance(body.get("metrics"), dict) else None,
            error=_str_or_none(body.get("error")),
            error_type=_str_or_none(body.get("error_type")),
            status_url=_str_or_none(body.get("status_url")),
            response_url=_str_or_none(body.get("response_url")),
            cancel_url=_str_or_none(body.get("cancel_url")),
        )


class CancelOutcome(enum.StrEnum):
    REQUESTED = "CANCELLATION_REQUESTED"
    ALREADY_COMPLETED = "ALREADY_COMPLETED"
    NOT_FOUND = "NOT_FOUND"


@dataclass(frozen=True)
class SubmitOptions:
    """Optional submit controls (docs/fal-protocol.md, "Submit" and "Submit options").

    ``None`` means "don't send".

    ``request_timeout``: seconds until the job must *start* (> 1, as both fal SDKs enforce).
    ``object_lifecycle``: seconds until output files expire, or the full preference dict.
    ``max_queue_length``: fal answers 429 if more requests than this are already waiting.
    """

    request_timeout: float | None = None
    object_lifecycle: int | dict[str, Any] | None = None
    priority: Literal["normal", "low"] | None = None
    store_io: bool | None = None
    max_queue_length: int | None = None
    runner_hint: str | None = None

    def __post_init__(self) -> None:
        if self.request_timeout is not None and (
            not _is_number(self.request_timeout) or not self.request_timeout > 1
        ):
            raise ValueError("request_timeout must be a number of seconds greater than 1")
        lifecycle = self.object_lifecycle
        # 0 would mean "never expire" to fal's backend, the opposite of what it reads like.
        if (
            lifecycle is not None
            and not isinstance(lifecycle, dict)
            and (not _is_int(lifecycle) or lifecycle < 1)
        ):
            raise ValueError("object_lifecycle must be a dict or a number of seconds >= 1")
        if self.priority not in (None, "normal", "low"):
            raise ValueError("priority must be 'normal' or 'low'")
        if self.store_io is not None and not isinstance(self.store_io, bool):
            raise ValueError("store_io must be True or False")
        if self.max_queue_length is not None and (
            not _is_int(self.max_queue_length) or self.max_queue_length < 0
        ):
            raise ValueError("max_queue_length must be an integer >= 0")
        hint = self.runner_hint
        if hint is not None and (not isinstance(hint, str) or not hint.strip() or not hint.isprintable()):
            raise ValueError("runner_hint must be a non-empty printable string")

    def headers(self) -> dict[str, str]:
        headers: dict[str, str] = {}
        if self.request_timeout is not None:
            headers["X-Fal-Request-Timeout"] = _format_seconds(self.request_timeout)
        if self.object_lifecycle is not None:
            preference = self.object_lifecycle
            if not isinstance(preference, dict):
                preference = {"expiration_duration_seconds": preference}
            headers["X-Fal-Object-Lifecycle-Preference"] = json.dumps(preference, separators=(",", ":"))
        if self.priority is not None:
            headers["X-Fal-Queue-Priority"] = self.priority
        if self.store_io is not None:
            headers["X-Fal-Store-IO"] = "1" if self.store_io else "0"
        if self.runner_hint is not None:
            headers["X-Fal-Runner-Hint"] = self.runner_hint
        return headers

    def query_params(self) -> dict[str, str]:
        if self.max_queue_length is None:
            return {}
        return {"fal_max_queue_length": str(self.max_queue_length)}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (_is_int(value) or isinstance(value, float)) and math.isfinite(value)


def _format_seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _int_or_none(value: Any) -> int | None:
    return value if _is_int(value) else None
