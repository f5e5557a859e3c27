"""The Flask app factory: fal's callbacks (receive/), the API (api/: jobs, the stored
callbacks, subscriptions to outgoing webhooks) and the dashboard (dashboard/), nothing else."""

from __future__ import annotations

from flask import Flask, request

from falbridge import config
from falbridge.config import Config
from falbridge.webhooks.api.auth import NOT_CONFIGURED, OFF_WARNING, ApiAuth
from falbridge.webhooks.api.batch import batch_api
from falbridge.webhooks.api.deliveries import deliveries
from falbridge.webhooks.api.files import files_api
from falbridge.webhooks.api.jobs import api
from falbridge.webhooks.api.subscriptions import subscriptions_api
from falbridge.webhooks.api.uploads import uploads_api
from falbridge.webhooks.dashboard import dashboard
from falbridge.webhooks.dashboard import session as dashboard_sessions
from falbridge.webhooks.dashboard.guard import secure_headers
from falbridge.webhooks.errors import register_error_handlers
from falbridge.webhooks.health import health
from falbridge.webhooks.receive.view import receiver
from falbridge.worker import metrics

# Public on purpose: it holds no data, and a client needs it to learn how to authenticate.
PUBLIC_API_ENDPOINTS = frozenset({"api.openapi_document"})
# Read by the dashboard's <img> elements, which send its session cookie, not a bearer token.
COOKIE_API_ENDPOINTS = frozenset({"job_files.download_file", "job_files.input_copy"})


def create_app(cfg: Config | None = None) -> Flask:
    """The app for `cfg`, else this process's configuration."""
    cfg = cfg or config.current()
    app = Flask("falbridge")
    # Otherwise werkzeug answers "/api/jobs/x//cancel" with a 308 redirect and an HTML page:
    # Flask sends routing redirects past every error handler, so no JSON envelope.
    app.url_map.merge_slashes = False
    auth = ApiAuth.from_config(cfg.api)
    app.config["FALBRIDGE"] = cfg
    app.extensions["falbridge_auth"] = auth
    # The default for any route that reads a body; the receiver and the API read theirs
    # through webhooks.limits.read_body, which also refuses (not truncates) chunked ones.
    app.config["MAX_CONTENT_LENGTH"] = cfg.receiver.max_body_bytes
    app.json.sort_keys = False  # type: ignore[attr-defined]  # Flask's default provider has it
    register_error_handlers(app)
    dashboard_sessions.install(app)
    if not auth.enabled:
        app.logger.warning(OFF_WARNING)
    elif not auth.configured:
        app.logger.error("%s; every /api request is answered 503", NOT_CONFIGURED)
    metrics.setup("web")  # no-op where `falbridge serve` set it up before forking
    app.register_blueprint(receiver)
    app.register_blueprint(health)
    app.register_blueprint(api)
    app.register_blueprint(batch_api)
    app.register_blueprint(deliveries)
    app.register_blueprint(uploads_api)
    app.register_blueprint(files_api)
    app.register_blueprint(subscriptions_api)
    app.register_blueprint(dashboard)
    app.after_request(secure_headers)

    @app.before_request
    def authenticate() -> None:
        # App-wide rather than on the blueprint, so unknown /api paths (404) and wrong
        # methods (405) are hidden behind the token too; runs before any body is read.
        path = request.path
        under_api = request.blueprint == "api" or path == "/api" or path.startswith("/api/")
        if not under_api or request.endpoint in PUBLIC_API_ENDPOINTS:
            return
        cookie_only = "Authorization" not in request.headers and request.endpoint in COOKIE_API_ENDPOINTS
        if cookie_only and dashboard_sessions.logged_in():
            return
        auth.check(request.headers.get("Authorization"))

    @app.get("/healthz")
    def healthz() -> dict[str, bool]:
        return {"ok": True}

    return app
