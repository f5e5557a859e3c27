"""`falbridge submit`: one job from its options, or (`--batch`) every line of a JSONL file
(falbridge.cli.batch); in process or through the HTTP API, as the other job commands."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from falbridge import strict_json
from falbridge.cli import batch
from falbridge.cli.api import jobs_api
from falbridge.cli.errors import InputError
from falbridge.cli.jobs import answered, show_finished
from falbridge.cli.render import ProgressPrinter
from falbridge.worker.accept_batch import MAX_BATCH
from falbridge.worker.fal.job_options import MAX_TAGS, MIN_START_TIMEOUT_S, PRIORITIES


@click.command()
@click.argument("endpoint_id", required=False)
@click.option(
    "--batch",
    "batch_file",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="JOBS.JSONL",
    help="Submit every line of this file, each a body of POST /api/jobs (no ENDPOINT_ID then).",
)
@click.option(
    "--results",
    "results_file",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="FILE",
    help="With --batch: where each line's job id or error goes [default: JOBS.JSONL.results.jsonl].",
)
@click.option(
    "--chunk-size",
    type=click.IntRange(1, MAX_BATCH),
    default=500,
    show_default=True,
    help="With --batch: lines sent per call.",
)
@click.option(
    "--input",
    "input_json",
    metavar="JSON|@FILE",
    help="The model input as a JSON object, or @file.json (@- for stdin).",
)
@click.option("--prompt", help="Sets input.prompt (fal-ai/evf-sam).")
@click.option("--negative-prompt", help="Sets input.negative_prompt (fal-ai/evf-sam).")
@click.option(
    "--image",
    metavar="PATH|URL",
    help="Sets input.image_url; a local file is uploaded to fal storage (a small one is sent as a data URI).",
)
@click.option("--external-id", help="Your idempotency key: the same key returns the same job.")
@click.option("--metadata", "metadata_json", metavar="JSON", help="A JSON object stored with the job.")
@click.option(
    "--notify-url",
    metavar="URL",
    help="POSTed the job's terminal event, signed with the notify secret (falbridge notify-secret show).",
)
@click.option(
    "--on-complete", metavar="TASK", help="A Celery task name, sent (job_id, event_id) when the job ends."
)
@click.option(
    "--on-complete-queue", metavar="QUEUE", help="The queue --on-complete goes to [default: celery]."
)
@click.option(
    "--priority", type=click.Choice(PRIORITIES), help="fal's queue priority [fal's default: normal]."
)
@click.option(
    "--start-timeout",
    type=click.FloatRange(min=MIN_START_TIMEOUT_S, min_open=True),
    metavar="SECONDS",
    help="fal fails the job if it has not started within this time.",
)
@click.option(
    "--object-lifecycle",
    type=click.IntRange(min=1),
    metavar="SECONDS",
    help="fal deletes the job's output files after this time [fal's default: the account's setting].",
)
@click.option(
    "--store-io/--no-store-io",
    default=None,
    help="Whether fal keeps the JSON input and output [fal: it does].",
)
@click.option(
    "--tag",
    "tags",
    multiple=True,
    metavar="KEY=VALUE",
    help=f"A label in fal's usage reports; repeatable, at most {MAX_TAGS}.",
)
@click.option(
    "--wait/--no-wait",
    default=False,
    help="Wait until the job finishes, showing fal's queue position and logs on stderr, then show it.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=300.0,
    show_default=True,
    help="Seconds --wait waits.",
)
@click.pass_context
def submit(
    ctx: click.Context,
    endpoint_id: str | None,
    batch_file: Path | None,
    results_file: Path | None,
    chunk_size: int,
    input_json: str | None,
    prompt: str | None,
    negative_prompt: str | None,
    image: str | None,
    external_id: str | None,
    metadata_json: str | None,
    notify_url: str | None,
    on_complete: str | None,
    on_complete_queue: str | None,
    priority: str | None,
    start_timeout: float | None,
    object_lifecycle: int | None,
    store_io: bool | None,
    tags: tuple[str, ...],
    wait: bool,
    timeout: float,
) -> None:
    """Store a job for ENDPOINT_ID and queue it for a worker to send to fal; with --batch,
    every job of a JSONL file."""
    if batch_file is not None:
        flags = {param.name: param.opts[0] for param in ctx.command.params}
        set_here = [name for name, value in ctx.params.items() if name in _PER_JOB and value not in _UNSET]
        given = [flags[name] for name in set_here]
        given += ["--wait"] * wait + ["ENDPOINT_ID"] * (endpoint_id is not None)
        if given:
            raise InputError(f"--batch takes every job from the file: drop {', '.join(sorted(given))}")
        _submit_batch(ctx, batch_file, results_file, chunk_size)
        return
    if endpoint_id is None:
        raise InputError("give ENDPOINT_ID, or --batch JOBS.JSONL")
    if results_file is not None:
        raise InputError("--results goes with --batch")
    payload = _json_object("--input", _read_at_file(input_json)) if input_json is not None else {}
    shortcuts = {"prompt": prompt, "negative_prompt": negative_prompt, "image_url": image}
    for key, value in shortcuts.items():
        if value is not None:
            if key in payload:
                option = "--" + {"image_url": "image"}.get(key, key).replace("_", "-")
                raise InputError(f"{option} conflicts with {key!r} in --input; give it once")
            payload[key] = _image_url(value) if key == "image_url" else value
    metadata = _json_object("--metadata", metadata_json) if metadata_json is not None else None
    if external_id is not None and not 1 <= len(external_id) <= 255:
        raise InputError("--external-id must be 1 to 255 characters long")
    api = jobs_api(ctx)
    with answered():
        existing = external_id is not None and bool(api.list(external_id=external_id, limit=1).jobs)
        job = api.submit(
            endpoint_id,
            payload,
            external_id=external_id,
            metadata=metadata,
            notify_url=notify_url,
            on_complete=on_complete,
            on_complete_queue=on_complete_queue,
            priority=priority,
            start_timeout=start_timeout,
            object_lifecycle=object_lifecycle,
            store_io=store_io,
            tags=_tags(tags),
        )
        click.echo(f"{job.id} {job.status}" + (" (existing job for this external id)" if existing else ""))
        if wait:
            show_finished(api.wait(job.id, timeout=timeout, on_progress=ProgressPrinter()))


_UNSET = (None, ())
_PER_JOB = frozenset(
    {"input_json", "prompt", "negative_prompt", "image", "external_id", "metadata_json"}
    | {"notify_url", "on_complete", "on_complete_queue"}
    | {"priority", "start_timeout", "object_lifecycle", "store_io", "tags"}
)


def _submit_batch(ctx: click.Context, path: Path, results_file: Path | None, chunk_size: int) -> None:
    results_path = results_file or path.with_name(path.name + ".results.jsonl")
    with answered():
        tally = batch.submit_file(jobs_api(ctx), path, results_path, chunk_size)
    batch.report(tally, results_path)
    if tally.failed:
        sys.exit(1)


def _tags(given: tuple[str, ...]) -> dict[str, str] | None:
    tags: dict[str, str] = {}
    for text in given:
        key, sep, value = text.partition("=")
        if not sep or not key:
            raise InputError(f"--tag takes KEY=VALUE, got {text[:80]!r}")
        if key in tags:
            raise InputError(f"--tag {key[:64]!r} given twice")
        tags[key] = value
    return tags or None  # the rest of fal's rules: checked with the other options


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


def _image_url(value: str) -> str | Path:
    if value.lower().startswith(("http://", "https://", "data:")):
        return value
    path = Path(value)
    if not path.is_file():
        raise InputError(f"--image: no such file: {value}")
    return path  # the Python API uploads it (or inlines it when small)
