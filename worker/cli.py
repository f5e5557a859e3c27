"""CLI commands over the worker's Python API: submit, jobs list/show, cancel, db, worker.

falbridge/cli.py assembles them (with serve, demo, sandbox) into `falbridge`.

Exit codes: 0 done; 1 understood but not possible (no such job, already finished,
external id conflict, database error, --wait ended without a completed job); 2 bad
usage or input (invalid JSON, rejected model input, missing file, conflicting options).
Every error is one line on stderr, `error: ...`, never a traceback.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from contextlib import nullcontext
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from sqlalchemy.exc import SQLAlchemyError

from falbridge.models.jobs import MAX_PAGE
from falbridge.models.serialize import job_detail, job_summary
from falbridge.models.states import ALL_STATUSES, EventSource
from falbridge.worker.render import format_when, make_console, make_table, show_job_tables

POLL_INTERVAL_S = 0.5


class _OneLine:
    def show(self, file=None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


class InputError(_OneLine, click.UsageError):
    """Bad usage or input: exit 2."""


class Failure(_OneLine, click.ClickException):
    """Understood, but it cannot be done: exit 1."""


class CliGroup(click.Group):
    """Turns click's usage errors and database errors into one `error:` line."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (InputError, Failure):
            raise
        except click.UsageError as exc:
            hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx else ""
            raise InputError(exc.format_message() + hint) from None
        except SQLAlchemyError as exc:
            raise Failure(_database_problem(exc)) from None


def _database_problem(exc: SQLAlchemyError) -> str:
    from sqlalchemy.engine import make_url

    from falbridge.models.db import database_url

    # The driver's message only: str(exc) would add the SQL and its parameters (inputs).
    reason = (str(getattr(exc, "orig", None) or exc).strip().splitlines() or [type(exc).__name__])[0]
    where = make_url(database_url()).render_as_string(hide_password=True)
    if re.search(r"no such (table|column)|(relation|column) \S+ does not exist", reason):
        return f"{where} is not set up ({reason}); run `falbridge db upgrade`"
    return f"database error at {where}: {reason}"


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
    endpoint_id, input_json, prompt, negative_prompt, image, external_id, metadata_json, wait, timeout
):
    """Store a job for ENDPOINT_ID and queue it for a worker to send to fal."""
    from falbridge.worker import api
    from falbridge.worker.fal import InputValidationError, validate_endpoint_id

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
        job, created = api.submit(
            endpoint_id, payload, external_id=external_id, metadata=metadata, source=EventSource.CLI
        )
    except api.ExternalIdConflict as exc:
        raise Failure(str(exc)) from None
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


def _not_json(name: str):
    raise ValueError(f"{name} is not JSON")  # Python's json would take NaN; databases would not


def _json_object(option: str, text: str) -> dict[str, Any]:
    try:
        value = json.loads(text, parse_constant=_not_json)
    except (ValueError, RecursionError) as exc:
        raise InputError(f"{option} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        kind = {list: "an array", str: "a string"}.get(type(value), "a " + type(value).__name__)
        raise InputError(f"{option} must be a JSON object, not {kind}")
    return value


def _image_url(value: str) -> str:
    from falbridge.worker.datauri import path_to_data_uri

    if value.lower().startswith(("http://", "https://", "data:")):
        return value
    try:
        return path_to_data_uri(value)
    except (ValueError, OSError) as exc:
        raise InputError(f"--image: {exc}") from None


def _wait_and_show(job_id, timeout: float) -> None:
    from falbridge.worker.api import get

    out = make_console()
    deadline = time.monotonic() + timeout
    job = get(job_id)
    with out.status(f"waiting for {job_id}") if out.is_terminal else nullcontext():
        while not job.job_status.is_terminal and time.monotonic() < deadline:
            time.sleep(min(POLL_INTERVAL_S, max(deadline - time.monotonic(), 0)))
            job = get(job_id)
    if not job.job_status.is_terminal:
        raise Failure(
            f"job {job_id} is still {job.status} after {timeout:g}s; is a worker running? (falbridge worker)"
        )
    show_job_tables(out, get(job_id, full=True))
    if job.status != "completed":
        sys.exit(1)


# -- jobs ----------------------------------------------------------------------


@click.group(cls=CliGroup)
def jobs():
    """List and inspect jobs."""


def _time_option(_ctx, param, value: str | None) -> datetime | None:
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
def list_jobs_command(status, endpoint_id, external_id, since, until, limit, cursor, as_json):
    """Newest jobs first."""
    from sqlalchemy import func, select

    from falbridge.models.db import transaction
    from falbridge.models.jobs import CursorError, JobFilters, decode_cursor, list_jobs
    from falbridge.models.tables import ResultFile

    if cursor:
        try:
            decode_cursor(cursor)
        except (CursorError, AttributeError):  # AttributeError: a crafted cursor, see webhooks/api.py
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
        counts = dict(
            s.execute(
                select(ResultFile.job_id, func.count())
                .group_by(ResultFile.job_id)
                .where(ResultFile.job_id.in_([j.id for j in rows]))
            ).all()
        )
    if as_json:
        click.echo(json.dumps({"jobs": [job_summary(j) for j in rows], "next_cursor": next_cursor}))
        return
    out = make_console()
    table = make_table(out, "id", "endpoint", "status", "created (UTC)", "completed (UTC)", "files / error")
    for j in rows:
        failed = j.status in ("failed", "cancelled")
        outcome = (j.error_type or (j.error or "")[:60]) if failed else str(counts.get(j.id, 0))
        table.add_row(
            str(j.id),
            j.endpoint_id,
            j.status,
            format_when(j.created_at),
            format_when(j.completed_at),
            outcome,
        )
    out.print(table)
    if next_cursor:
        out.print(f"next page: --cursor {next_cursor}")


@jobs.command("show")
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True, help="Print the job as JSON.")
def show_job(job_id, as_json):
    """Every field of a job, its files and its history."""
    job = _existing_job(job_id, full=True)
    if as_json:
        click.echo(json.dumps(job_detail(job)))
    else:
        show_job_tables(make_console(), job)


@click.command()
@click.argument("job_id")
def cancel(job_id):
    """Cancel a job: at once if fal has not got it yet, else by asking fal."""
    from falbridge.worker import api

    _existing_job(job_id)
    job, outcome = api.cancel(job_id)
    if job is None:  # deleted since we looked
        raise Failure(f"no job with id {job_id}")
    if outcome.startswith("already"):
        raise Failure(f"job {job.id} is already {job.status}; nothing to cancel")
    click.echo(f"{job.id} {job.status} ({outcome})")


def _existing_job(job_id: str, *, full: bool = False):
    from falbridge.models.jobs import parse_uuid
    from falbridge.worker.api import get

    if parse_uuid(job_id) is None:
        raise InputError(f"{job_id!r} is not a job id (a UUID)")
    job = get(job_id, full=full)
    if job is None:
        raise Failure(f"no job with id {job_id}")
    return job


# -- db, worker ----------------------------------------------------------------


@click.group(cls=CliGroup)
def db():
    """Database schema."""


@db.command("upgrade")
def db_upgrade():
    """Create or migrate the tables (safe to repeat)."""
    from sqlalchemy.engine import make_url

    from falbridge.models.db import database_url
    from falbridge.models.migrate import current_revision, upgrade

    upgrade()
    where = make_url(database_url()).render_as_string(hide_password=True)
    click.echo(f"{where} is at revision {current_revision()}")


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
def worker_command(concurrency, pool, loglevel):
    """Run a Celery worker that submits jobs and applies callbacks."""
    from falbridge.worker.broker import using_embedded_redis
    from falbridge.worker.celery_app import ensure_broker
    from falbridge.worker.fal import FalConfigError, key_from_env

    try:  # Fail now rather than on every task; the message never includes the key.
        key_from_env(os.environ)
    except FalConfigError as exc:
        raise Failure(f"{exc}; the worker needs it to call fal") from None

    # With no REDIS_URL this starts the embedded Redis; this process holds it (in
    # worker.broker) for as long as the worker runs, and other processes share it.
    app = ensure_broker()
    if using_embedded_redis():
        click.echo(f"using the embedded Redis at {app.conf.broker_url}", err=True)
    argv = ["worker", f"--pool={pool}", f"--loglevel={loglevel.upper()}"]
    if concurrency:
        argv.append(f"--concurrency={concurrency}")
    app.worker_main(argv)


COMMANDS = (submit, jobs, cancel, db, worker_command)
