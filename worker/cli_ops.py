"""Operator commands: `falbridge reconcile` and `falbridge jobs download`."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("reconcile")
@click.option(
    "--loop",
    "interval",
    type=click.FloatRange(min=0.5),
    default=None,
    help="Keep sweeping every N seconds instead of once.",
)
def reconcile(interval: float | None) -> None:
    """One pass of the sweeper, done in this process (no Redis needed)."""
    import time

    from falbridge.worker.reconcile import ReconcileSettings, inline_actions, sweep

    try:
        settings = ReconcileSettings.from_env()
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    while True:
        report = sweep(inline_actions(), settings)
        click.echo(
            " ".join(f"{k}={v}" for k, v in report.__dict__.items() if k != "errors")
            + (f" errors={len(report.errors)}" if report.errors else "")
        )
        for error in report.errors:
            click.echo(f"  {error}", err=True)
        if interval is None:
            return
        time.sleep(interval)


@click.command("download")
@click.argument("job_id")
@click.option(
    "--to",
    "dest",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
    show_default=True,
    help="Directory; files go into DEST/JOB_ID/.",
)
def download(job_id: str, dest: Path) -> None:
    """Save a job's result files locally (fal's URLs do not last forever)."""
    from falbridge.worker.api import get
    from falbridge.worker.downloads import download_result_files
    from falbridge.worker.fetch import FetchRefused

    job = get(job_id, full=True)
    if job is None:
        raise click.ClickException(f"no job {job_id}")
    if not job.files:
        click.echo(f"job {job.id} has no result files ({job.status})")
        return
    try:
        for path in download_result_files(job, dest):
            click.echo(str(path))
    except FetchRefused as exc:
        raise click.ClickException(f"refused to fetch: {exc}") from None
