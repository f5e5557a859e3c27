"""`falbridge serve` (gunicorn) and `falbridge demo`."""

from __future__ import annotations

import click


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
    from gunicorn.app.base import BaseApplication

    class _App(BaseApplication):
        def load_config(self):
            for key, value in {
                "bind": f"{host}:{port}",
                "workers": workers,
                "threads": threads,
                "worker_class": "gthread",
                "accesslog": None,
                "graceful_timeout": 10,
                "timeout": 30,
            }.items():
                self.cfg.set(key, value)

        def load(self):
            from falbridge.webhooks.wsgi import app

            return app

    _App().run()


@click.command("demo")
@click.option(
    "--batch",
    default=50,
    show_default=True,
    type=click.IntRange(0, 5000),
    help="mixed jobs to submit after the two seed examples",
)
@click.option(
    "--timeout",
    default=60.0,
    show_default=True,
    type=click.FloatRange(1, 3600),
    help="seconds to wait for every job to finish",
)
def demo(batch: int, timeout: float) -> None:
    """Run the whole pipeline locally (or against real fal with FAL_KEY + PUBLIC_BASE_URL)."""
    from falbridge.webhooks.demo import run_demo

    raise SystemExit(run_demo(batch=batch, timeout=timeout))
