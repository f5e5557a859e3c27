"""`falbridge serve`: the receiver and the jobs API under gunicorn."""

from __future__ import annotations

from typing import Any

import click
from flask import Flask
from gunicorn.app.base import BaseApplication

from falbridge import config
from falbridge.cli.errors import InputError
from falbridge.worker import broker, metrics


class _Gunicorn(BaseApplication):  # type: ignore[misc]  # gunicorn ships no type hints
    def __init__(self, options: dict[str, Any]) -> None:
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Flask:
        # Imported by each gunicorn worker after it forks, so no worker shares the
        # master's database connections or JWKS client.
        from falbridge import logs
        from falbridge.webhooks.wsgi import app

        logs.configure(config.current().observability.log_format)
        return app


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--workers", default=2, show_default=True, type=click.IntRange(1, 64), help="gunicorn worker processes"
)
@click.option(
    "--threads",
    default=8,
    show_default=True,
    type=click.IntRange(1, 256),
    help="threads per worker (the receiver waits on the database, not the CPU)",
)
def serve(host: str, port: int, workers: int, threads: int) -> None:
    """Run the receiver and the jobs API under gunicorn."""
    try:
        config.current().require("FAL_WEBHOOK_USER_ID", "FALBRIDGE_SECRET_KEY", by="the receiver")
    except config.ConfigError as exc:
        raise InputError(f"configuration: {exc}") from None
    cfg = config.current()
    if not cfg.broker.redis_url:  # the embedded default: start it if needed, keep it up
        broker.ensure_running(cfg.database.resolved_var_dir())
        broker.keep_alive(cfg.database.resolved_var_dir())
    # Before gunicorn forks: its workers' metric files start from an empty directory.
    metrics.setup("web", fresh=True)
    options = {
        "bind": f"{host}:{port}",
        "workers": workers,
        "threads": threads,
        "worker_class": "gthread",
        "accesslog": None,
        "graceful_timeout": 10,
        "timeout": 30,
    }
    _Gunicorn(options).run()
