"""Map httpx failures and non-2xx responses onto the error taxonomy in ``errors``.

The one asymmetry that matters: submit is a POST that creates billable work, so once its
bytes may have reached fal, silence is ``OutcomeUnknownError``; status, result and cancel
are idempotent, so the same failures are merely ``RetryableError``.
"""

from __future__ import annotations

import email.utils
import math
from datetime import UTC, datetime
from typing import Any, Literal

import httpx

from falbridge.worker.fal.errors import (
    FalError,
    FinalError,
    ModelError,
    OutcomeUnknownError,
    ResultNotReadyError,
    RetryableError,
    detail_messages,
)
from falbridge.worker.fal.wire import json_or_none

Operation = Literal["submit", "status", "result", "cancel", "upload"]

# Failures raised before the request bytes left this process: nothing can exist on
# fal's side, whatever the operation.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.ProxyError)
# Our own request was malformed; sending it again would fail the same way.
_OUR_BUG = (httpx.UnsupportedProtocol, httpx.LocalProtocolError)

_RETRYABLE_STATUSES = frozenset({408, 429, 502, 503, 504})
_GATEWAY_STATUSES = frozenset({502, 503, 504})
_AUTH_STATUSES = frozenset({401, 403})
_NOT_READY_WORDS = ("in progress", "in queue", "not completed", "not yet completed", "not ready")
_PENDING_STATUSES = frozenset({"IN_QUEUE", "IN_PROGRESS"})
_TEXT_DETAIL_LIMIT = 300


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date)."""
    if not value or not value.strip():
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (ValueError, OverflowError):  # unparseable, or an offset no datetime can hold
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def error_from_transport(
    exc: httpx.RequestError, *, operation: Operation, target: str, request_id: str | None = None
) -> FalError:
    """Classify an exception httpx raised instead of returning a response."""
    reason = type(exc).__name__
    if isinstance(exc, _NOT_SENT):
        return RetryableError(f"fal {operation} {target}: not sent ({reason})", request_id=request_id)
    if isinstance(exc, _OUR_BUG):
        return FinalError(f"fal {operation} {target}: invalid request ({reason})", request_id=request_id)
    if operation == "submit":
        return OutcomeUnknownError(
            f"fal submit {target}: sent, but no usable response ({reason}); "
            "the job may exist, reconcile before re-submitting",
            request_id=request_id,
        )
    return RetryableError(f"fal {operation} {target}: no usable response ({reason})", request_id=request_id)


def error_from_response(
    response: httpx.Response, *, operation: Operation, target: str, request_id: str | None = None
) -> FalError:
    """Classify a non-2xx response (and a not-ready 202 on result)."""
    status = response.status_code
    detail, error_type = _error_fields(response)
    request_id = request_id or response.headers.get("x-fal-request-id")
    # Non-JSON bodies (proxy HTML pages) stay in ``detail`` but would only clutter the message.
    summary = "; ".join(detail_messages(detail)[:3]) if json_or_none(response) is not None else ""
    message = f"fal {operation} {target}: HTTP {status}" + (f": {summary}" if summary else "")
    fields: dict[str, Any] = {
        "status_code": status,
        "detail": detail,
        "error_type": error_type,
        "request_id": request_id,
    }
    error_class = _error_class(operation, status, detail, error_type, response)
    if issubclass(error_class, RetryableError):
        retry_after = parse_retry_after(response.headers.get("retry-after"))
        return error_class(message, retry_after=retry_after, **fields)
    return error_class(message, **fields)


def is_not_ready_result(response: httpx.Response) -> bool:
    """True when a result GET answered with a request that has not finished yet."""
    status = response.status_code
    body = json_or_none(response)
    if status == 202 and isinstance(body, dict) and body.get("status") in _PENDING_STATUSES:
        return True
    if status not in (400, 409, 425) or not isinstance(body, dict):
        return False
    detail = body.get("detail")
    return isinstance(detail, str) and any(word in detail.lower() for word in _NOT_READY_WORDS)


def _error_class(
    operation: Operation,
    status: int,
    detail: Any,
    error_type: str | None,
    response: httpx.Response,
) -> type[FalError]:
    if operation == "result":
        return _result_error_class(status, detail, error_type, response)
    if status in _RETRYABLE_STATUSES:
        return RetryableError
    if operation == "submit" and status >= 500:
        # A 500 on a POST can come after the job was queued; only 502/503/504 (above)
        # are read as "the gateway never handed it on".
        return OutcomeUnknownError
    return FinalError


def _result_error_class(
    status: int, detail: Any, error_type: str | None, response: httpx.Response
) -> type[FalError]:
    # The result GET replays the model's own status and body for a failed job, so the
    # same number can mean "your job failed" or "this call failed"; the body decides.
    if status in _AUTH_STATUSES:
        return FinalError
    if status in (408, 429):
        return RetryableError
    if is_not_ready_result(response):
        return ResultNotReadyError
    has_model_shape = isinstance(detail, list) or error_type is not None
    if status == 404 and not has_model_shape:
        return FinalError  # unknown or expired request id, not a model outcome
    if status in _GATEWAY_STATUSES:
        # A bare gateway error is transient; one carrying fal's request-error fields is
        # the stored outcome of the job (fal already retried it server-side).
        return ModelError if has_model_shape else RetryableError
    if has_model_shape or (detail is not None and isinstance(json_or_none(response), dict)):
        return ModelError
    return FinalError


def _error_fields(response: httpx.Response) -> tuple[Any, str | None]:
    body = json_or_none(response)
    header_type = response.headers.get("x-fal-error-type")
    if isinstance(body, dict):
        detail = body.get("detail")
        error_type = body.get("error_type") or header_type
        if detail is None and "status" in body and isinstance(body["status"], str):
            detail = body["status"]  # cancel answers {"status": "..."} with no detail
        return detail, error_type if isinstance(error_type, str) else None
    text = _safe_text(response).strip()
    return (text[:_TEXT_DETAIL_LIMIT] or None), header_type


def _safe_text(response: httpx.Response) -> str:
    """The body as text; empty when its declared charset cannot decode it (httpx falls back
    from an unknown charset by itself, but a known one can still fail: UTF-32 without a BOM)."""
    try:
        return response.text
    except UnicodeError:
        return ""
