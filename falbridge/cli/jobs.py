"""Commands on jobs: submit, jobs list / show / download, cancel (exit codes: cli.errors)."""

from __future__ import annotations

import json
import sys
import time
from contextlib import nullcontext
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from falbridge import strict_json
from falbridge.cli.errors import CliGroup, Failure, InputError
from falbridge.cli.render import make_console, show_job_list, show_job_tables
from falbridge.models.db import transaction
from falbridge.models.jobs import parse_uuid
from falbridge.models.listing import MAX_PAGE, CursorError, JobFilters, decode_cursor, file_counts, list_jobs
from falbridge.models.serialize import job_detail, job_summary
from falbridge.models.states import ALL_STATUSES, EventSource
from falbridge.models.tables import Job
from falbridge.worker import actions
from falbridge.worker.accept import ExternalIdConflict
from falbridge.worker.cancel import Cancellation
from falbridge.worker.download.files import download_result_files
from falbridge.worker.fal import InputValidationError, validate_endpoint_id
from falbridge.worker.input_files import path_to_data_uri

POLL_INTERVAL_S = 0.5


# -- submit ------------------------------------------------------------------


@click.command()
@click.argument("endpoint_id")
@click.option(
    "--input",
    "input_json",
    metavar="JSON|@FILE",
    help="The model input as a JSON object, or @file.json (@- for stdin).",
)
@click.option("--prompt", help="Sets input.prompt (fal-ai/evf-sam).")
@click.option("--negative-prompt", help="Sets input.negative_prompt (fal-ai/evf-sam).")
@click.option(
    "--image", metavar="PATH|URL", help="Sets input.image_url; a local file is sent inline as a data URI."
)
@click.option("--external-id", help="Your idempotency key: the same key returns the same job.")
@click.option("--metadata", "metadata_json", metavar="JSON", help="A JSON object stored with the job.")
@click.option("--wait/--no-wait", default=False, help="Wait until the job finishes, then show it.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=300.0,
    show_default=True,
    help="Seconds --wait waits.",
)
def submit(
    endpoint_id: str,
    input_json: str | None,
    prompt: str | None,
    negative_prompt: str | None,
    image: str | None,
    external_id: str | None,
    metadata_json: str | None,
    wait: bool,
    timeout: float,
) -> None:
    """Store a job for ENDPOINT_ID and queue it for a worker to send to fal."""
    try:
        validate_endpoint_id(endpoint_id)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    payload = _json_object("--input", _read_at_file(input_json)) if input_json is not None else {}
    shortcuts = {
        "prompt": ("--prompt", prompt),
        "negative_prompt": ("--negative-prompt", negative_prompt),
        "image_url": ("--image", image),
    }
    for key, (option, value) in shortcuts.items():
        if value is None:
            continue
        if key in payload:
            raise InputError(f"{option} conflicts with {key!r} in --input; give it once")
        payload[key] = _image_url(value) if key == "image_url" else value
    metadata = _json_object("--metadata", metadata_json) if metadata_json is not None else None
    if external_id is not None and not 1 <= len(external_id) <= 255:
        raise InputError("--external-id must be 1 to 255 characters long")
    try:
        job, created = actions.submit(
            endpoint_id, payload, external_id=external_id, metadata=metadata, source=EventSource.CLI
        )
    except ExternalIdConflict as exc:
        raise InputError(str(exc)) from None
    except InputValidationError as exc:
        raise InputError(str(exc)) from None
    click.echo(f"{job.id} {job.status}" + ("" if created else " (existing job for this external id)"))
    if wait:
        _wait_and_show(job.id, timeout)


def _read_at_file(value: str) -> str:
    if not value.startswith("@"):
        return value
    try:
        return sys.stdin.read() if value == "@-" else Path(value[1:]).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(
            f"--input: cannot read {value[1:]}: {getattr(exc, 'strerror', None) or exc}"
        ) from None


def _json_object(option: str, text: str) -> dict[str, Any]:
    try:
        value = strict_json.loads(text, storable=True)
    except strict_json.JSONRejected as exc:
        raise InputError(f"{option} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        kinds: dict[type, str] = {list: "an array", str: "a string"}
        kind = kinds.get(type(value), "a " + type(value).__name__)
        raise InputError(f"{option} must be a JSON object, not {kind}")
    return value


def _image_url(value: str) -> str:
    if value.lower().startswith(("http://", "https://", "data:")):
        return value
    try:
        return path_to_data_uri(value)
    except (ValueError, OSError) as exc:
        raise InputError(f"--image: {exc}") from None


def _wait_and_show(job_id: object, timeout: float) -> None:
    out = make_console()
    deadline = time.monotonic() + timeout
    job = _existing_job(str(job_id))
    with out.status(f"waiting for {job_id}") if out.is_terminal else nullcontext():
        while not job.job_status.is_terminal and time.monotonic() < deadline:
            time.sleep(min(POLL_INTERVAL_S, max(deadline - time.monotonic(), 0)))
            job = _existing_job(str(job_id))
    if not job.job_status.is_terminal:
        raise Failure(
            f"job {job_id} is still {job.status} after {timeout:g}s; is a worker running? (falbridge worker)"
        )
    show_job_tables(out, _existing_job(str(job_id), full=True))
    if job.status != "completed":
        sys.exit(1)


# -- jobs ----------------------------------------------------------------------


@click.group(cls=CliGroup)
def jobs() -> None:
    """List and inspect jobs."""


def _time_option(_ctx: click.Context, param: click.Parameter, value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        at = datetime.fromisoformat(value)
        return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
    except (ValueError, OverflowError):
        raise InputError(f"--{param.name} must be an ISO-8601 date or time, got {value!r}") from None


@jobs.command("list")
@click.option("--status", type=click.Choice(ALL_STATUSES))
@click.option("--endpoint", "endpoint_id", help="Only jobs for this endpoint id.")
@click.option("--external-id")
@click.option(
    "--since",
    callback=_time_option,
    metavar="ISO",
    help="Created at or after (UTC unless an offset is given).",
)
@click.option(
    "--until", callback=_time_option, metavar="ISO", help="Created before (UTC unless an offset is given)."
)
@click.option("--limit", type=click.IntRange(1, MAX_PAGE), default=50, show_default=True)
@click.option("--cursor", help="The next-page cursor a previous listing printed.")
@click.option("--json", "as_json", is_flag=True, help="Print {jobs, next_cursor} as JSON.")
def list_jobs_command(
    status: str | None,
    endpoint_id: str | None,
    external_id: str | None,
    since: datetime | None,
    until: datetime | None,
    limit: int,
    cursor: str | None,
    as_json: bool,
) -> None:
    """Newest jobs first."""
    if cursor:
        try:
            decode_cursor(cursor)
        except (CursorError, AttributeError):  # AttributeError: a crafted cursor (webhooks.api.params)
            raise InputError("--cursor is not one a listing printed") from None
    filters = JobFilters(
        status=status,
        endpoint_id=endpoint_id,
        external_id=external_id,
        created_after=since,
        created_before=until,
    )
    with transaction() as s:
        rows, next_cursor = list_jobs(s, filters, limit=limit, cursor=cursor)
        counts = file_counts(s, [row.id for row in rows])
    if as_json:
        click.echo(json.dumps({"jobs": [job_summary(j) for j in rows], "next_cursor": next_cursor}))
    else:
        show_job_list(make_console(), rows, counts, next_cursor)


@jobs.command("show")
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True, help="Print the job as JSON.")
def show_job(job_id: str, as_json: bool) -> None:
    """Every field of a job, its files and its history."""
    job = _existing_job(job_id, full=True)
    if as_json:
        click.echo(json.dumps(job_detail(job)))
    else:
        show_job_tables(make_console(), job)


@click.command()
@click.argument("job_id")
def cancel(job_id: str) -> None:
    """Cancel a job: at once if fal has not got it yet, else by asking fal."""
    _existing_job(job_id)
    job, outcome = actions.cancel(job_id)
    if job is None:  # deleted since we looked
        raise InputError(f"no job with id {job_id}")
    if outcome is Cancellation.ALREADY_TERMINAL:
        raise InputError(f"job {job.id} is already {job.status}; nothing to cancel")
    click.echo(f"{job.id} {job.status} ({outcome})")


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
def download(job_id: str, dest: Path) -> None:
    """Save a job's result files locally (fal's URLs do not last forever).

    Every file is tried: the saved paths are printed, then one line per file that failed
    (exit 1 if any did)."""
    job = _existing_job(job_id, full=True)
    if not job.files:
        click.echo(f"job {job.id} has no result files ({job.status})")
        return
    results = download_result_files(job, dest)
    for result in results:
        if result.saved is not None:
            click.echo(str(result.saved))
    failed = [result for result in results if result.saved is None]
    for result in failed:
        url = result.file.url if len(result.file.url) <= 200 else result.file.url[:200] + "..."
        click.echo(f"failed: {result.file.path} {url}: {result.error}", err=True)
    if failed:
        raise Failure(f"{len(failed)} of {len(results)} result files could not be downloaded")


def _existing_job(job_id: str, *, full: bool = False) -> Job:
    if parse_uuid(job_id) is None:
        raise InputError(f"{job_id!r} is not a job id (a UUID)")
    job = actions.get(job_id, full=full)
    if job is None:
        raise InputError(f"no job with id {job_id}")
    return job
