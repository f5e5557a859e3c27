"""Terminal rendering for the CLI: rich tables, plain and wide when not on a terminal."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import Any

import click
from rich import box
from rich.console import Console
from rich.table import Table

from falbridge.values import Job, JobPage, LiveStatus, ResultFile


def make_console() -> Console:
    # Not a terminal: no colours or boxes, and wide enough that rows never wrap.
    tty = sys.stdout.isatty()
    return Console(file=sys.stdout, markup=False, highlight=False, emoji=False, width=None if tty else 400)


def make_table(out: Console, *columns: str, title: str | None = None) -> Table:
    return Table(*columns, title=title, box=box.SIMPLE if out.is_terminal else None, title_justify="left")


def format_when(at: datetime | None) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if at else ""


def short_json(value: Any) -> str:
    """JSON with long strings (data URIs, base64) cut down, for reading in a terminal."""

    def cut(v: Any) -> Any:
        if isinstance(v, str) and len(v) > 120:
            return f"{v[:60]}… ({len(v)} chars)"
        if isinstance(v, dict):
            return {k: cut(x) for k, x in v.items()}
        return [cut(x) for x in v] if isinstance(v, list) else v

    return "" if value is None else json.dumps(cut(value), ensure_ascii=False)


def show_job_list(out: Console, page: JobPage) -> None:
    """A listing page: one row a job (what went wrong, for those that failed), the next cursor."""
    table = make_table(out, "id", "endpoint", "status", "created (UTC)", "completed (UTC)", "error")
    for j in page.jobs:
        failed = j.status in ("failed", "cancelled")
        table.add_row(
            j.id,
            j.endpoint_id,
            j.status,
            format_when(j.created_at),
            format_when(j.completed_at),
            (j.error_type or (j.error or "")[:60]) if failed else "",
        )
    out.print(table)
    if page.next_cursor:
        out.print(f"next page: --cursor {page.next_cursor}")


def show_job_tables(out: Console, job: Job) -> None:
    data = job.to_json()
    fields = make_table(out, "field", "value", title=f"job {job.id}")
    for key, value in data.items():
        if key in ("files", "events"):
            continue
        text = short_json(value) if isinstance(value, (dict, list)) else "" if value is None else str(value)
        fields.add_row(key, text)
    out.print(fields)
    if job.files:
        files = make_table(
            out, "path", "url", "content type", "size", "dimensions", "stored copy", title="files"
        )
        for f in job.files:
            dims = f"{f.width}x{f.height}" if f.width and f.height else ""
            size = f.size if f.size is not None else f.file_size
            files.add_row(
                f.path, f.url, f.content_type or "", "" if size is None else str(size), dims, _stored_copy(f)
            )
        out.print(files)
    events = make_table(out, "at (UTC)", "source", "from", "to", "detail", title="history")
    for e in job.events:
        events.add_row(
            format_when(e.at), e.source, e.from_status or "", e.to_status, short_json(e.to_json()["detail"])
        )
    out.print(events)


def _stored_copy(f: ResultFile) -> str:
    """falbridge's copy of a result file, in a cell: where to get it, or why there is none."""
    if f.status == "stored":
        return f"{f.download_url} sha256:{(f.sha256 or '')[:12]}"
    if f.status == "missing":
        return f"missing: {f.missing_reason}"
    return "not stored"


class ProgressPrinter:
    """`--wait`'s progress on stderr, as fal reports it: the queue position while queued,
    fal's log lines as they come while running; a line whenever the state moves."""

    def __init__(self) -> None:
        self._said: str | None = None

    def __call__(self, live: LiveStatus) -> None:
        state = _state_of(live)
        if state != self._said:
            click.echo(state, err=True)
            self._said = state
        for line in live.new_logs:
            click.echo(f"  {line.timestamp or ''} {line.message}".rstrip(), err=True)


def _state_of(live: LiveStatus) -> str:
    job = live.job
    if job.is_terminal or live.fal_status is None:
        why = f" (fal: {live.unavailable})" if live.unavailable else ""
        return f"{job.status}{why}"
    if live.fal_status == "IN_QUEUE":
        where = f", position {live.queue_position}" if live.queue_position is not None else ""
        return f"{job.status}: in fal's queue{where}"
    if live.fal_status == "IN_PROGRESS":
        return f"{job.status}: running at fal"
    return f"{job.status}: fal says {live.fal_status}"
