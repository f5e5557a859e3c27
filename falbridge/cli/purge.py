"""`falbridge purge`: retention for the job history (falbridge.worker.purge)."""

from __future__ import annotations

from datetime import timedelta

import click

from falbridge import config
from falbridge.cli.errors import InputError


def _age(ctx: click.Context, param: click.Parameter, value: str | None) -> timedelta | None:
    if value is None:
        return None
    try:
        return config.parse_age(value)
    except ValueError as exc:
        raise InputError(f"--older-than: {exc}") from None


@click.command("purge")
@click.option(
    "--older-than",
    "age",
    callback=_age,
    metavar="AGE",
    help="Jobs finished longer ago than this (90d, 12h, 2w, 30m, 45s). Default: FALBRIDGE_PURGE_OLDER_THAN.",
)
@click.option(
    "--compact/--no-compact",
    default=None,
    help="Keep each job's summary (status, times, error); drop its input, result and files. "
    "Default: FALBRIDGE_PURGE_COMPACT.",
)
@click.option("--dry-run", is_flag=True, help="Only count what would go, per table, and the stored bytes.")
@click.option(
    "--batch",
    type=click.IntRange(1, 10_000),
    default=None,
    help="Jobs per transaction. Default: FALBRIDGE_PURGE_BATCH.",
)
def purge(age: timedelta | None, compact: bool | None, dry_run: bool, batch: int | None) -> None:
    """Delete old finished jobs with their events, deliveries, stored files and outbox rows
    (running jobs are never touched)."""
    from falbridge.worker.purge import purge as run_purge  # the storage backends: only now

    settings = config.current().purge
    age = age or settings.age()
    if age is None:
        raise InputError("--older-than is required (or set FALBRIDGE_PURGE_OLDER_THAN)")
    report = run_purge(
        age,
        compact=settings.compact if compact is None else compact,
        dry_run=dry_run,
        batch_size=batch or settings.batch,
    )
    click.echo(report.line())
