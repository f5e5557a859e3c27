"""Commands that run falbridge's processes: db upgrade, worker, beat, reconcile, demo
(`serve` is in serve.py, which alone needs gunicorn)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import click

from falbridge import config
from falbridge.cli.errors import CliGroup, Failure, InputError, where_the_database_is
from falbridge.demo import run_demo
from falbridge.models.migrate import current_revision, upgrade
from falbridge.worker import broker, embedded_beat, inline, metrics
from falbridge.worker.celery_app import ensure_broker
from falbridge.worker.scheduled import purge_now, sweep_now
from falbridge.worker.sweep import sweep

if TYPE_CHECKING:
    from celery import Celery


@click.group(cls=CliGroup)
def db() -> None:
    """Database schema."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Create or migrate the tables (safe to repeat)."""
    upgrade()
    click.echo(f"{where_the_database_is()} is at revision {current_revision()}")


@click.command("worker")
@click.option("--concurrency", type=click.IntRange(min=1), help="Processes or threads (default: CPUs).")
@click.option(
    "--pool", type=click.Choice(["prefork", "threads", "solo"]), default="prefork", show_default=True
)
@click.option(
    "--loglevel",
    type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
    default="info",
    show_default=True,
)
def worker(concurrency: int | None, pool: str, loglevel: str) -> None:
    """Run a Celery worker that submits jobs and applies callbacks."""
    try:
        config.current().require("FALBRIDGE_SECRET_KEY", by="the worker")
    except config.ConfigError as exc:
        raise InputError(f"configuration: {exc}") from None
    if config.current().fal.api_key() is None:  # fail now rather than on every task
        raise Failure("no fal key: set FAL_KEY, or FAL_KEY_ID and FAL_KEY_SECRET; the worker needs it")
    app = _broker_announced()
    cfg = config.current()
    metrics.setup("worker", fresh=True)  # before anything counts: this run's files only
    if not cfg.broker.redis_url:  # the embedded default: no beat to start, so we sweep
        embedded_beat.start(cfg.database.resolved_var_dir(), cfg.sweep.interval_s, sweep_now)
        if cfg.purge.older_than:
            embedded_beat.start(cfg.database.resolved_var_dir(), cfg.purge.interval_s, purge_now, "purger")
    argv = ["worker", f"--pool={pool}", f"--loglevel={loglevel.upper()}"]
    if concurrency:
        argv.append(f"--concurrency={concurrency}")
    app.worker_main(argv)


@click.command("beat")
@click.option(
    "--schedule",
    type=click.Path(dir_okay=False),
    help="Celery beat's schedule file (default: celerybeat-schedule in the var dir).",
)
def beat(schedule: str | None) -> None:
    """Run the sweeper every FALBRIDGE_RECONCILE_INTERVAL_S (Celery beat): one per deployment."""
    app = _broker_announced()
    where = schedule or str(config.current().database.resolved_var_dir() / "celerybeat-schedule")
    app.start(["beat", "--loglevel=INFO", f"--schedule={where}"])


def _broker_announced() -> Celery:
    # With no REDIS_URL this starts the embedded Redis (if no process has yet), which every
    # process of this var dir shares, and watches it: gone, it is started again.
    app = ensure_broker()
    cfg = config.current()
    if not cfg.broker.redis_url:
        broker.keep_alive(cfg.database.resolved_var_dir())
        click.echo(f"using the embedded Redis at {app.conf.broker_url}", err=True)
    return app


@click.command("reconcile")
@click.option(
    "--loop",
    "interval",
    type=click.FloatRange(min=0.5),
    default=None,
    help="Keep sweeping every N seconds instead of once.",
)
def reconcile(interval: float | None) -> None:
    """The sweeper, done in this process, now (no Redis needed)."""
    while True:
        report = sweep(inline.run, config.current().sweep)
        counts = " ".join(f"{name}={count}" for name, count in report.counts().items())
        click.echo(counts + (f" errors={len(report.errors)}" if report.errors else ""))
        for error in report.errors:
            click.echo(f"  {error}", err=True)
        if interval is None:
            return
        time.sleep(interval)


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
@click.option(
    "--keep-running",
    is_flag=True,
    help="afterwards, keep the stack (and its dashboard) up until Ctrl-C",
)
def demo(batch: int, timeout: float, keep_running: bool) -> None:
    """Run the whole pipeline locally (or against real fal with FAL_KEY + PUBLIC_BASE_URL)."""
    raise SystemExit(run_demo(batch=batch, timeout=timeout, keep_running=keep_running))
