"""The Flask app factory: the fal receiver, the jobs API, and nothing else."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask, request

from falbridge.webhooks.auth import NOT_CONFIGURED, OFF_WARNING, ApiAuth
from falbridge.webhooks.errors import register_error_handlers
from falbridge.webhooks.settings import ReceiverSettings

# Public on purpose: it holds no data, and a client needs it to learn how to authenticate.
PUBLIC_API_ENDPOINTS = frozenset({"api.openapi_document"})


def create_app(overrides: Mapping[str, Any] | None = None) -> Flask:
    """`overrides`: ReceiverSettings fields, plus `api_tokens` / `api_auth` (else from the env)."""
    app = Flask("falbridge")
    # Otherwise werkzeug answers "/api/jobs/x//cancel" with a 308 redirect and an HTML page:
    # Flask sends routing redirects past every error handler, so no JSON envelope.
    app.url_map.merge_slashes = False
    overrides = dict(overrides or {})
    auth = ApiAuth.from_env(tokens=overrides.pop("api_tokens", None), mode=overrides.pop("api_auth", None))
    settings = ReceiverSettings.from_env(**overrides)
    app.config["RECEIVER"] = settings
    app.extensions["falbridge_auth"] = auth
    # The default for any route that reads a body; the receiver and the API read theirs
    # through webhooks.limits.read_body, which also refuses (not truncates) chunked ones.
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.json.sort_keys = False
    register_error_handlers(app)
    if not auth.enabled:
        app.logger.warning(OFF_WARNING)
    elif not auth.configured:
        app.logger.error("%s; every /api request is answered 503", NOT_CONFIGURED)

    from falbridge.webhooks.api import api
    from falbridge.webhooks.receiver import receiver

    app.register_blueprint(receiver)
    app.register_blueprint(api)

    @app.before_request
    def authenticate():
        # App-wide rather than on the blueprint, so unknown /api paths (404) and wrong
        # methods (405) are hidden behind the token too; runs before any body is read.
        path = request.path
        under_api = request.blueprint == "api" or path == "/api" or path.startswith("/api/")
        if under_api and request.endpoint not in PUBLIC_API_ENDPOINTS:
            auth.check(request.headers.get("Authorization"))

    @app.get("/healthz")
    def healthz():
        return {"ok": True}

    return app
