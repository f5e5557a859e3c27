"""Commands on jobs: submit, jobs list / show / download, cancel (exit codes: cli.errors).

Each works on the database (the Python API, falbridge.local) or, with `falbridge --api URL`
(or FALBRIDGE_API_URL), through that falbridge's HTTP API (falbridge.Client): the same
values either way, so the same output. A job id may be a unique prefix of 8 hex digits.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
import httpx

from falbridge.cli.api import jobs_api
from falbridge.cli.errors import CliGroup, Failure, InputError
from falbridge.cli.render import ProgressPrinter, make_console, show_job_list, show_job_tables
from falbridge.errors import ApiError, FalbridgeError, InvalidInput, UploadFailed, WaitTimeout
from falbridge.models.listing import MAX_PAGE
from falbridge.models.metadata_filter import parse_value
from falbridge.models.states import ALL_STATUSES
from falbridge.values import Job
from falbridge.worker.download.files import download_result_files


@contextmanager
def answered(cursor: str | None = None) -> Iterator[None]:
    """The Python API's exceptions as the CLI's exit codes: 2 for a wrong request, 1 for a
    failure while running. `cursor`: what to say of a cursor refused."""
    try:
        yield
    except InvalidInput as exc:
        named = [e.get("field") for e in exc.errors]
        raise InputError(cursor if cursor and "cursor" in named else str(exc)) from None
    except WaitTimeout as exc:
        raise Failure(f"{exc}; is a worker running? (falbridge worker)") from None
    except UploadFailed as exc:
        raise Failure(str(exc)) from None
    except ApiError as exc:
        raise (InputError(str(exc)) if 400 <= exc.status < 500 else Failure(str(exc))) from None
    except FalbridgeError as exc:  # invalid input, a conflict, no such job
        raise InputError(str(exc)) from None
    except httpx.HTTPError as exc:
        raise Failure(f"cannot reach the falbridge API: {exc}") from None


def show_finished(job: Job) -> None:
    show_job_tables(make_console(), job)
    if job.status != "completed":
        sys.exit(1)


@click.group(cls=CliGroup)
def jobs() -> None:
    """List and inspect jobs."""


def time_option(_ctx: click.Context, param: click.Parameter, value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        at = datetime.fromisoformat(value)
        return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
    except (ValueError, OverflowError):
        raise InputError(f"--{param.name} must be an ISO-8601 date or time, got {value!r}") from None


def _metadata_filter(text: str) -> tuple[str, Any]:
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise InputError(f"--metadata takes KEY=VALUE, got {text[:80]!r}")
    return key, parse_value(raw)


@jobs.command("list")
@click.option("--status", type=click.Choice(ALL_STATUSES))
@click.option("--endpoint", "endpoint_id", help="Only jobs for this endpoint id.")
@click.option("--external-id")
@click.option(
    "--since",
    callback=time_option,
    metavar="ISO",
    help="Created at or after (UTC unless an offset is given).",
)
@click.option(
    "--until", callback=time_option, metavar="ISO", help="Created before (UTC unless an offset is given)."
)
@click.option(
    "--updated-after",
    callback=time_option,
    metavar="ISO",
    help="The changes feed: jobs changed after this time, oldest change first.",
)
@click.option(
    "--metadata",
    "metadata_filters",
    multiple=True,
    metavar="KEY=VALUE",
    help='Only jobs whose metadata has KEY = VALUE (VALUE read as JSON if it is: 7, true, "7"). Repeatable.',
)
@click.option("--limit", type=click.IntRange(1, MAX_PAGE), default=50, show_default=True)
@click.option("--cursor", help="The next-page cursor a previous listing printed.")
@click.option("--json", "as_json", is_flag=True, help="Print {jobs, next_cursor} as JSON.")
@click.pass_context
def list_jobs_command(
    ctx: click.Context,
    status: str | None,
    endpoint_id: str | None,
    external_id: str | None,
    since: datetime | None,
    until: datetime | None,
    updated_after: datetime | None,
    metadata_filters: tuple[str, ...],
    limit: int,
    cursor: str | None,
    as_json: bool,
) -> None:
    """Newest jobs first; with --updated-after, the jobs that changed since, oldest first."""
    metadata = dict(_metadata_filter(text) for text in metadata_filters)
    with answered(cursor="--cursor is not one a listing printed"):
        page = jobs_api(ctx).list(
            status=status,
            endpoint_id=endpoint_id,
            external_id=external_id,
            created_after=since,
            created_before=until,
            metadata=metadata or None,
            updated_after=updated_after,
            limit=limit,
            cursor=cursor,
        )
    if as_json:
        click.echo(json.dumps(page.to_json()))
    else:
        show_job_list(make_console(), page)


@jobs.command("show")
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True, help="Print the job as JSON.")
@click.pass_context
def show_job(ctx: click.Context, job_id: str, as_json: bool) -> None:
    """Every field of a job, its files and its history."""
    with answered():
        job = jobs_api(ctx).get(job_id)
    if as_json:
        click.echo(json.dumps(job.to_json()))
    else:
        show_job_tables(make_console(), job)


@click.command()
@click.argument("job_id")
@click.pass_context
def cancel(ctx: click.Context, job_id: str) -> None:
    """Cancel a job: at once if fal has not got it yet, else by asking fal."""
    with answered():
        job = jobs_api(ctx).cancel(job_id)
    said = "cancelled" if job.status == "cancelled" else "cancel requested"
    click.echo(f"{job.id} {job.status} ({said})")


@jobs.command("wait")
@click.argument("job_id")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=300.0,
    show_default=True,
    help="Seconds to wait.",
)
@click.pass_context
def wait_for_job(ctx: click.Context, job_id: str, timeout: float) -> None:
    """Wait until a job finishes, showing its progress as `submit --wait` does; exit 1 unless
    it completed."""
    with answered():
        show_finished(jobs_api(ctx).wait(job_id, timeout=timeout, on_progress=ProgressPrinter()))


@jobs.command("download")
@click.argument("job_id")
@click.option(
    "--to",
    "dest",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
    show_default=True,
    help="Directory; files go into DEST/JOB_ID/.",
)
@click.pass_context
def download(ctx: click.Context, job_id: str, dest: Path) -> None:
    """Save a job's result files locally: falbridge's stored copy (its sha256 checked) when
    it has one, else from fal's URL (which does not last forever).

    Every file is tried: the saved paths are printed, then one line per file that failed
    (exit 1 if any did)."""
    api = jobs_api(ctx)
    with answered():
        job = api.get(job_id)
    if not job.files:
        click.echo(f"job {job.id} has no result files ({job.status})")
        return
    results = download_result_files(job, dest, open_stored=api.stored_file)
    for result in results:
        if result.saved is not None:
            click.echo(str(result.saved))
    failed = [result for result in results if result.saved is None]
    for result in failed:
        url = result.file.url if len(result.file.url) <= 200 else result.file.url[:200] + "..."
        click.echo(f"failed: {result.file.path} {url}: {result.error}", err=True)
    if failed:
        raise Failure(f"{len(failed)} of {len(results)} result files could not be downloaded")
