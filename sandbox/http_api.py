"""The WSGI application: fal's queue API (§1), fal.run (/_run/), the JWKS, storage and the CDN
(storage.py), and the admin API."""

from __future__ import annotations

import contextlib
import http
import socket
import urllib.parse
from typing import Any

from werkzeug.wrappers import Request, Response

from falbridge.sandbox.admin import AdminApi
from falbridge.sandbox.core import Accepted, Rejected, Sandbox, SubmitRequest
from falbridge.sandbox.routes import (
    EndpointId,
    RequestRoute,
    match_request_route,
    parse_endpoint_id,
    queue_urls,
)
from falbridge.sandbox.storage import StorageApi
from falbridge.sandbox.web import (
    check_fal_auth,
    detail,
    json_response,
    parse_bool,
    public_base_url,
    read_json,
    validation_error,
)

# fal.run's host (synchronous calls) is this path prefix here: one listener serves every
# host, so FAL_RUN_HOST=host:port/_run points fal-client's `run` at it.
RUN_PREFIX = "/_run/"

_FAL_HEADER_PREFIXES = ("x-fal-", "x-app-fal-")
_START_TIMEOUT_HEADERS = ("X-Fal-Request-Timeout", "X-Fal-Request-Start-Timeout")
_INGRESS_ERROR_PAGE = (
    "<html><head><title>{code} Service Temporarily Unavailable</title></head><body>"
    "<center><h1>{code} Service Temporarily Unavailable</h1></center><hr><center>nginx</center>"
    "</body></html>"
)
_REFUSAL_PAGE = (
    "<html><head><title>{code} {reason}</title></head><body>"
    "<center><h1>{code} {reason}</h1></center><hr><center>nginx</center></body></html>"
)


class ResponseLost(ConnectionAbortedError):
    """Raised after the client socket was shut down on purpose; the server stays quiet."""


class SandboxApp:
    def __init__(self, core: Sandbox) -> None:
        self.core = core
        self.admin = AdminApi(core)
        self.storage = StorageApi(core)

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        return self.dispatch(request)(environ, start_response)

    def dispatch(self, request: Request) -> Response:
        path, method = request.path, request.method
        if path == "/_sandbox" or path.startswith("/_sandbox/"):
            return self.admin.dispatch(request)
        if path == "/.well-known/jwks.json":
            if method not in ("GET", "HEAD"):
                return detail("Method Not Allowed", 405)
            return json_response(self.core.keys.jwks(), headers={"Cache-Control": "max-age=300"})
        if path.startswith("/files/"):
            return self.storage.cdn(request)
        if path == "/storage" or path.startswith("/storage/"):
            return self.storage.rest(request)
        if path.startswith(RUN_PREFIX):
            return self._run(request) if method == "POST" else detail("Method Not Allowed", 405)
        route = match_request_route(path)
        if route is not None:
            return self._request_route(request, route)
        if method == "POST":
            return self._submit(request)
        return detail("Not Found", 404)

    # -- submit ---------------------------------------------------------------------

    def _submit(self, request: Request) -> Response:
        parsed = self._submit_request(request, request.path)
        if isinstance(parsed, Response):
            return parsed
        result = self.core.submit(parsed)
        if not isinstance(result, Accepted):
            return self._rejection(result)
        job = result.job
        if result.response_delay_s:
            self.core.stop_event.wait(result.response_delay_s)
        if result.response_lost:
            _drop_connection(request)
        body = {
            "request_id": job.request_id,
            "gateway_request_id": job.request_id,
            "status": "IN_QUEUE",
            "queue_position": result.queue_position,
            **queue_urls(self._base_url(request), job.app_id, job.request_id),
        }
        return json_response(body, headers={"x-fal-request-id": job.request_id})

    def _run(self, request: Request) -> Response:
        """fal.run: the model runs while the caller waits; no queue URLs, no webhook."""
        parsed = self._submit_request(request, request.path[len(RUN_PREFIX) - 1 :])
        if isinstance(parsed, Response):
            return parsed
        parsed.webhook_url, parsed.run_inline = None, True
        result = self.core.submit(parsed)
        if not isinstance(result, Accepted):
            return self._rejection(result)
        outcome = result.job.result
        if outcome is None:  # a start timeout or cancel can only hit queued jobs
            return detail("Request did not run", 500)
        headers = {"x-fal-request-id": result.job.request_id}
        if outcome.request_error_type:
            headers["X-Fal-Error-Type"] = outcome.request_error_type
        return json_response(outcome.body, outcome.http_status, headers)

    def _submit_request(self, request: Request, path: str) -> SubmitRequest | Response:
        endpoint = parse_endpoint_id(path)
        if endpoint is None:
            return detail(f"Application not found: {path.strip('/')}", 404)
        denied = check_fal_auth(request, self.core.config.allowed_keys)
        if denied is not None:
            return denied
        return self._parse_submit(request, endpoint)

    def _parse_submit(self, request: Request, endpoint: EndpointId) -> SubmitRequest | Response:
        ok, payload = read_json(request)
        if not ok:
            return validation_error(["body"], f"Invalid JSON: {payload}", "value_error.jsondecode")
        if not isinstance(payload, dict):
            return validation_error(["body"], "value is not a valid dict", "type_error.dict")
        webhook_url = request.args.get("fal_webhook")
        if webhook_url is not None:
            parts = urllib.parse.urlsplit(webhook_url)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                return validation_error(
                    ["query", "fal_webhook"], "invalid or missing URL scheme", "value_error.url.scheme"
                )
        max_queue_length: int | None = None
        raw_max_queue_length = request.args.get("fal_max_queue_length")
        if raw_max_queue_length is not None:
            if not raw_max_queue_length.isdigit():
                return validation_error(
                    ["query", "fal_max_queue_length"], "value is not a valid integer", "type_error.integer"
                )
            max_queue_length = int(raw_max_queue_length)
        priority = request.headers.get("X-Fal-Queue-Priority", "normal").strip().lower()
        if priority not in ("normal", "low"):
            return validation_error(
                ["header", "x-fal-queue-priority"],
                "value is not a valid enumeration member; permitted: 'normal', 'low'",
                "type_error.enum",
            )
        # fal-client up to 1.0 sends X-Fal-Request-Timeout, newer releases
        # X-Fal-Request-Start-Timeout (fal-api.md 10): both set the start deadline.
        start_timeout: float | bool | None = None
        for name in _START_TIMEOUT_HEADERS:
            start_timeout = _positive_float(request.headers.get(name))
            if start_timeout is False:
                return validation_error(
                    ["header", name.lower()], "value must be a positive number", "value_error"
                )
            if start_timeout is not None:
                break
        return SubmitRequest(
            endpoint=endpoint,
            payload=payload,
            webhook_url=webhook_url,
            base_url=self._base_url(request),
            headers_seen={
                key.lower(): value
                for key, value in request.headers.items()
                if key.lower().startswith(_FAL_HEADER_PREFIXES)
            },
            query_seen={k: v for k, v in request.args.items() if k.startswith("fal_")},
            priority=priority,
            start_timeout_s=start_timeout,
            max_queue_length=max_queue_length,
        )

    def _rejection(self, rejection: Rejected) -> Response:
        if rejection.reason == "submit_5xx":
            # Looks like an ingress error: HTML from nginx and no x-fal-request-id header.
            page = _INGRESS_ERROR_PAGE.format(code=rejection.status)
            return Response(page, status=rejection.status, content_type="text/html")
        headers = {}
        if rejection.retry_after_s is not None:
            seconds = rejection.retry_after_s
            headers["Retry-After"] = str(int(seconds)) if float(seconds).is_integer() else str(seconds)
        return json_response({"detail": rejection.detail or "Too many requests"}, rejection.status, headers)

    # -- status / result / cancel ---------------------------------------------------

    def _request_route(self, request: Request, route: RequestRoute) -> Response:
        expected = "PUT" if route.action == "cancel" else "GET"
        if request.method != expected and not (expected == "GET" and request.method == "HEAD"):
            return detail("Method Not Allowed", 405)
        denied = check_fal_auth(request, self.core.config.allowed_keys)
        if denied is not None:
            return denied
        job = self.core.find(route.app_path, route.request_id)
        if route.action == "cancel":
            if job is None:
                return json_response({"status": "NOT_FOUND"}, 404)
            outcome = self.core.cancel(job)
            return json_response({"status": outcome}, 202 if outcome == "CANCELLATION_REQUESTED" else 400)
        if job is None:
            return detail("Request not found", 404)
        headers = {"x-fal-request-id": job.request_id}
        if route.action == "status":
            with_logs = parse_bool(request.args.get("logs"))
            if with_logs is None:
                return validation_error(
                    ["query", "logs"], "value could not be parsed to a boolean", "type_error.bool"
                )
            view = self.core.status_view(job, self._base_url(request), with_logs)
            return json_response(view, 200 if view["status"] == "COMPLETED" else 202, headers)
        if job.has_fault("result_error"):
            return _refused_result(job.faults.result_error_status)
        result = job.result
        if result is None:
            return detail("Request is still in progress", 400)
        if result.request_error_type:
            headers["X-Fal-Error-Type"] = result.request_error_type
        return json_response(result.body, result.http_status, headers)

    def _base_url(self, request: Request) -> str:
        return public_base_url(request, self.core.config.public_url)


def _positive_float(text: str | None) -> float | bool | None:
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        return False
    return value if value > 0 else False


def _refused_result(status: int) -> Response:
    """The `result_error` fault: HTML with no request id, so nothing a model answered."""
    try:
        reason = http.HTTPStatus(status).phrase
    except ValueError:  # a code the standard library does not name
        reason = "Error"
    page = _REFUSAL_PAGE.format(code=status, reason=reason)
    return Response(page, status=status, content_type="text/html")


def _drop_connection(request: Request) -> None:
    """Close the TCP connection before any response byte is written."""
    sock = request.environ.get("werkzeug.socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
    raise ResponseLost("submit response dropped on purpose")
