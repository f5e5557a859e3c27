"""Error taxonomy for calls to fal's queue API.

Callers act on the class, not on status codes:

- ``RetryableError``: repeating the call is safe (it provably created nothing, or the
  call is idempotent). ``retry_after`` carries the server's hint when it gave one.
- ``FinalError``: repeating will not help (bad key, unknown request, rejected input).
- ``ModelError`` (a ``FinalError``): the *job* failed; the queue handed back the
  model's own error. Distinct from "our call failed".
- ``OutcomeUnknownError``: submit only. The POST left this process but we cannot tell
  whether fal created a job; re-sending could bill twice, so the caller reconciles.
- ``FalConfigError``: the client cannot be built (no key, bad base URL).

No message built here ever includes credentials; messages are made from status codes,
fal's ``detail`` and our own wording only.
"""

from __future__ import annotations

from typing import Any

Detail = list[Any] | str | None


class FalError(Exception):
    """Base class for everything this package raises about fal."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        detail: Detail = None,
        error_type: str | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.detail = detail
        self.error_type = error_type
        self.request_id = request_id

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        parts = [repr(self.message)]
        for name in ("status_code", "error_type", "request_id"):
            value = getattr(self, name)
            if value is not None:
                parts.append(f"{name}={value!r}")
        return f"{type(self).__name__}({', '.join(parts)})"

    def detail_messages(self) -> list[str]:
        """fal's ``detail`` as human-readable lines, e.g. ``body.prompt: field required``."""
        return detail_messages(self.detail)


class FalConfigError(FalError):
    """The client is misconfigured; raised at construction, before any request."""


class RetryableError(FalError):
    """Safe to repeat, after ``retry_after`` seconds when the server said so."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after

    def __repr__(self) -> str:
        base = super().__repr__()
        if self.retry_after is None:
            return base
        return f"{base[:-1]}, retry_after={self.retry_after!r})"


class ResultNotReadyError(RetryableError):
    """The result was asked for before the request reached ``COMPLETED``."""


class FinalError(FalError):
    """Repeating the same call will not succeed."""


class ModelError(FinalError):
    """The request finished and the model (or fal on its behalf) reported a failure."""


class OutcomeUnknownError(FalError):
    """A submit was sent but its outcome is unknown; reconcile, never re-send blindly."""


def detail_messages(detail: Detail) -> list[str]:
    """Render fal's ``detail`` (list of ``{loc, msg, ...}`` or a plain string) as lines.

    ``msg`` is meant for humans; ``loc`` is joined with dots so a line reads like
    ``body.prompt: field required``. Unknown shapes are shown rather than dropped, because
    a half-understood error is still better than an empty one.
    """
    if detail is None:
        return []
    if isinstance(detail, str):
        return [detail]
    if not isinstance(detail, list):
        return [str(detail)]
    lines = []
    for item in detail:
        if not isinstance(item, dict):
            lines.append(str(item))
            continue
        loc = item.get("loc") or []
        location = ".".join(str(part) for part in loc) if isinstance(loc, (list, tuple)) else str(loc)
        message = item.get("msg") or item.get("message") or item.get("type") or "invalid"
        lines.append(f"{location}: {message}" if location else str(message))
    return lines
