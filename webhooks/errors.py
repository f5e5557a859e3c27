"""One error shape for every JSON response: {"error": {"code", "message", "details"}}."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask, Response, g, jsonify, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

# A Flask view's return value: body, status, headers.
ErrorResponse = tuple[Response, int, dict[str, str]]


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details
        self.headers = dict(headers or {})


def error_response(
    status: int, code: str, message: str, details: Any = None, headers: Mapping[str, str] | None = None
) -> ErrorResponse:
    body = {"error": {"code": code, "message": message, "details": details}}
    return jsonify(body), status, dict(headers or {})


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError) -> ErrorResponse:
        return error_response(exc.status, exc.code, exc.message, exc.details, exc.headers)

    @app.errorhandler(RequestEntityTooLarge)
    def _too_large(exc: RequestEntityTooLarge) -> ErrorResponse:
        # Name the limit, so a caller knows what to change; werkzeug's text doesn't.
        # webhooks.limits.read_body says which limit was in force; else the app-wide one.
        limit, setting = g.get("body_limit") or (request.max_content_length, "FALBRIDGE_MAX_WEBHOOK_BYTES")
        return error_response(
            413,
            "request_entity_too_large",
            f"request body is larger than the {limit}-byte limit",
            {"limit_bytes": limit, "setting": setting},
        )

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> ErrorResponse:
        # 404 for unknown routes, 405, 400 ... as JSON rather than werkzeug's HTML page.
        # Keep werkzeug's own headers (405's Allow) but not its text/html content type.
        headers = {k: v for k, v in exc.get_headers() if k.lower() != "content-type"}
        code = (exc.name or "error").lower().replace(" ", "_")
        return error_response(exc.code or 500, code, exc.description or exc.name, headers=headers)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> ErrorResponse:
        app.logger.exception("unhandled error")
        return error_response(500, "internal_error", "internal server error")
