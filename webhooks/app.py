"""The Flask app factory: the fal receiver, the jobs API, and nothing else."""
from __future__ import annotations

from typing import Any, Mapping

from flask import Flask

from webhooks.errors import register_error_handlers
from webhooks.settings import ReceiverSettings


def create_app(overrides: Mapping[str, Any] | None = None) -> Flask:
    app = Flask("falbridge")
    settings = ReceiverSettings.from_env(**dict(overrides or {}))
    app.config["RECEIVER"] = settings
    # werkzeug answers 413 from the Content-Length header, before reading the body.
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.json.sort_keys = False
    register_error_handlers(app)

    from webhooks.api import api
    from webhooks.receiver import receiver

    app.register_blueprint(receiver)
    app.register_blueprint(api)

    @app.get("/healthz")
    def healthz():
        return {"ok": True}

    return app
