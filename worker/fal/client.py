"""HTTP client for fal's queue API (docs/fal-protocol.md, "Queue API"), built directly on httpx.

Nothing here retries: every failure is classified (see ``errors``) and the caller decides,
because only the caller knows whether a submit may be repeated.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Mapping
from typing import Any

import httpx
from pydantic import BaseModel

from falbridge import config
from falbridge.worker.fal.classify import (
    Operation,
    error_from_response,
    error_from_transport,
    is_not_ready_result,
)
from falbridge.worker.fal.endpoints import fallback_queue_urls, quote_request_id, validate_endpoint_id
from falbridge.worker.fal.errors import FinalError, ResultNotReadyError
from falbridge.worker.fal.inputs import validate_input
from falbridge.worker.fal.records import CancelOutcome, QueueStatus, RequestRefLike, Submission, SubmitOptions
from falbridge.worker.fal.settings import (
    DEFAULT_LIMITS,
    DEFAULT_QUEUE_URL,
    DEFAULT_TIMEOUT,
    DEFAULT_USER_AGENT,
    KeyAuth,
    checked_base_url,
    checked_key,
    origin_of,
)
from falbridge.worker.fal.wire import (
    LoggableTarget,
    checked_webhook_url,
    json_object,
    json_or_none,
    parse_submission,
)

log = logging.getLogger(__name__)


class QueueClient:
    """One ``httpx.Client`` talking to one queue base URL with one key."""

    def __init__(
        self,
        base_url: str | None = None,
        key: str | None = None,
        *,
        timeout: httpx.Timeout | float | None = None,
        limits: httpx.Limits | None = None,
        user_agent: str = DEFAULT_USER_AGENT,
    ) -> None:
        self.base_url = checked_base_url(base_url or DEFAULT_QUEUE_URL)
        self._origin = origin_of(self.base_url)
        self._http = httpx.Client(
            auth=KeyAuth(checked_key(key)),
            timeout=timeout if timeout is not None else DEFAULT_TIMEOUT,
            limits=limits or DEFAULT_LIMITS,
            headers={"User-Agent": user_agent, "Accept": "application/json"},
            # fal never redirects queue calls; following one would re-send the key elsewhere.
            follow_redirects=False,
        )

    def __repr__(self) -> str:
        return f"QueueClient(base_url={self.base_url!r})"

    def __reduce__(self) -> Any:
        raise TypeError("QueueClient holds a secret and an open connection pool; it cannot be pickled")

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> QueueClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def submit(
        self,
        endpoint_id: str,
        input: Mapping[str, Any] | BaseModel,
        *,
        webhook_url: str | None = None,
        options: SubmitOptions | None = None,
        headers: Mapping[str, str] | None = None,
        validate: bool = True,
    ) -> Submission:
        """Queue one request. Raises ``OutcomeUnknownError`` if it may or may not exist.

        ``headers``: more of fal's submit headers (a job's options, ``submit_headers``).
        ``validate=False`` skips the typed-input check (the body must still be an object).
        """
        validate_endpoint_id(endpoint_id)
        payload = validate_input(endpoint_id, input) if validate else json_object(input)
        body = json.dumps(payload, allow_nan=False, separators=(",", ":")).encode()
        options = options or SubmitOptions()
        params = dict(options.query_params())
        if webhook_url is not None:
            params["fal_webhook"] = checked_webhook_url(webhook_url)
        sent = {"Content-Type": "application/json", **(headers or {}), **options.headers()}
        response = self._send(
            "POST",
            f"{self.base_url}/{endpoint_id}",
            operation="submit",
            target=endpoint_id,
            content=body,
            params=params,
            headers=sent,
        )
        if not response.is_success:
            raise error_from_response(response, operation="submit", target=endpoint_id)
        return parse_submission(self.base_url, endpoint_id, response)

    def status(self, ref: RequestRefLike, *, with_logs: bool = False) -> QueueStatus:
        url = self._url_of(ref, "status_url")
        response = self._send(
            "GET",
            url,
            operation="status",
            target=ref.request_id,
            request_id=ref.request_id,
            params={"logs": "1" if with_logs else "0"},
        )
        if not response.is_success:
            raise error_from_response(
                response, operation="status", target=ref.request_id, request_id=ref.request_id
            )
        body = json_or_none(response)
        if not isinstance(body, dict) or not isinstance(body.get("status"), str):
            raise FinalError(
                f"fal status {ref.request_id}: HTTP {response.status_code} without a status object",
                status_code=response.status_code,
                request_id=ref.request_id,
            )
        return QueueStatus.from_body(body, response.status_code)

    def result(self, ref: RequestRefLike) -> dict[str, Any]:
        """The bare model output. A failed job raises ``ModelError`` with fal's detail."""
        url = self._url_of(ref, "response_url")
        response = self._send(
            "GET", url, operation="result", target=ref.request_id, request_id=ref.request_id
        )
        if not response.is_success:
            raise error_from_response(
                response, operation="result", target=ref.request_id, request_id=ref.request_id
            )
        if is_not_ready_result(response):
            raise ResultNotReadyError(
                f"fal result {ref.request_id}: not completed yet",
                status_code=response.status_code,
                request_id=ref.request_id,
            )
        body = json_or_none(response)
        if not isinstance(body, dict):
            raise FinalError(
                f"fal result {ref.request_id}: HTTP {response.status_code} body is not a JSON object",
                status_code=response.status_code,
                request_id=ref.request_id,
            )
        return body

    def cancel(self, ref: RequestRefLike) -> CancelOutcome:
        """Ask fal to cancel. ``REQUESTED`` does not mean it stopped: a running job may finish."""
        url = self._url_of(ref, "cancel_url")
        response = self._send(
            "PUT", url, operation="cancel", target=ref.request_id, request_id=ref.request_id
        )
        if response.is_success:
            return CancelOutcome.REQUESTED
        if response.status_code == 404:
            return CancelOutcome.NOT_FOUND
        body = json_or_none(response)
        if (
            response.status_code == 400
            and isinstance(body, dict)
            and body.get("status") == "ALREADY_COMPLETED"
        ):
            return CancelOutcome.ALREADY_COMPLETED
        raise error_from_response(
            response, operation="cancel", target=ref.request_id, request_id=ref.request_id
        )

    def _send(
        self,
        method: str,
        url: str,
        *,
        operation: Operation,
        target: str,
        request_id: str | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        where = LoggableTarget(url, kwargs.get("params"))
        started = time.monotonic()
        try:
            response = self._http.request(method, url, **kwargs)
        except httpx.RequestError as exc:
            elapsed_ms = (time.monotonic() - started) * 1000
            log.debug("fal %s %s failed after %.0f ms: %s", method, where, elapsed_ms, type(exc).__name__)
            raise error_from_transport(
                exc, operation=operation, target=target, request_id=request_id
            ) from exc
        elapsed_ms = (time.monotonic() - started) * 1000
        log.debug("fal %s %s -> %d in %.0f ms", method, where, response.status_code, elapsed_ms)
        return response

    def _url_of(self, ref: RequestRefLike, attribute: str) -> str:
        quote_request_id(ref.request_id)
        stored: str | None = getattr(ref, attribute, None)
        if not stored:
            rebuilt = fallback_queue_urls(self.base_url, ref.endpoint_id, ref.request_id)
            url: str = getattr(rebuilt, attribute)
            return url
        # Stored URLs are used verbatim (docs/fal-protocol.md, "Model ids and the sub-path
        # rule"), but the key only goes to the origin we were configured for.
        try:
            stored_origin = origin_of(stored)
        except httpx.InvalidURL:
            raise FinalError(
                f"stored {attribute} of request {ref.request_id} is not a valid URL",
                request_id=ref.request_id,
            ) from None
        if stored_origin != self._origin:
            raise FinalError(
                f"refusing to send the fal key to {stored_origin}: {attribute} of request "
                f"{ref.request_id} is not under the configured queue URL {self.base_url}",
                request_id=ref.request_id,
            )
        return stored


_shared_lock = threading.Lock()
_shared: tuple[int, QueueClient] | None = None


def get_client() -> QueueClient:
    """The process-wide client, built from the configuration on first use.

    Rebuilt when the pid changes: a Celery prefork child must not write to sockets it
    inherited from its parent. The inherited client is dropped, not closed, so the
    parent's connections are left alone.
    """
    global _shared
    with _shared_lock:
        if _shared is None or _shared[0] != os.getpid():
            fal = config.current().fal
            _shared = (os.getpid(), QueueClient(fal.queue_url, fal.api_key()))
        return _shared[1]


def close_client() -> None:
    """Close the process-wide client if this process created it."""
    global _shared
    with _shared_lock:
        if _shared is not None and _shared[0] == os.getpid():
            _shared[1].close()
        _shared = None


def _reset_lock_in_child() -> None:
    # A lock held by another thread at fork time would stay locked forever in the child.
    global _shared_lock
    _shared_lock = threading.Lock()


os.register_at_fork(after_in_child=_reset_lock_in_child)
