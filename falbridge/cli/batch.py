"""`falbridge submit --batch jobs.jsonl`: every line a body of POST /api/jobs, sent
CHUNK lines a call (`submit_batch`, in process or over the API), with a progress bar on
stderr, a summary line on stdout, and a results file of one JSON line per input line.

A line without an external_id gets `jsonl-<first 32 hex digits of the file's sha256>-<line
number>`, so running the same file again submits nothing twice (each line finds its job);
an edited file is another file. Exit 0 when every line was submitted (or found), 1 when
some line failed (the good ones were still submitted), 2 when nothing could be tried.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from falbridge import strict_json
from falbridge.batch_values import BatchResult
from falbridge.cli.api import JobsApi
from falbridge.cli.errors import InputError

SHOWN_FAILURES = 20  # on stderr; all of them are in the results file


@dataclass(frozen=True)
class Line:
    number: int
    body: dict[str, Any] | None  # None: the line is refused before sending (`error` says why)
    error: dict[str, Any] | None = None


@dataclass
class Tally:
    created: int = 0
    existing: int = 0
    failed: int = 0
    blank: int = 0
    failures: list[str] = field(default_factory=list)

    def count(self, number: int, record: dict[str, Any]) -> None:
        if "skipped" in record:
            self.blank += 1
        elif "error" in record:
            self.failed += 1
            error = record["error"]
            self.failures.append(f"line {number}: {error['code']}: {error['message'][:300]}")
        elif record["created"]:
            self.created += 1
        else:
            self.existing += 1


def derived_external_id(digest: str, number: int) -> str:
    return f"jsonl-{digest[:32]}-{number}"


def read_lines(path: Path) -> tuple[list[Line], int]:
    """The file's lines, each parsed (or why not), and how many of them are blank."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InputError(f"--batch: cannot read {path}: {exc.strerror or exc}") from None
    digest = hashlib.sha256(raw).hexdigest()
    lines, blank = [], 0
    for number, text in enumerate(raw.splitlines(), start=1):
        if not text.strip():
            lines.append(Line(number, None))
            blank += 1
            continue
        lines.append(_parsed(number, text, digest))
    return lines, blank


def _parsed(number: int, text: bytes, digest: str) -> Line:
    try:
        body = strict_json.loads(text, storable=True)
    except strict_json.JSONRejected as exc:
        return Line(number, None, _invalid_json(f"not valid JSON: {exc}"))
    if not isinstance(body, dict):
        return Line(number, None, _invalid_json("must be a JSON object, the body of POST /api/jobs"))
    if body.get("external_id") is None:
        body["external_id"] = derived_external_id(digest, number)
    return Line(number, body)


def _invalid_json(message: str) -> dict[str, Any]:
    return {"status": 400, "code": "invalid_json", "message": message, "details": None}


def submit_file(api: JobsApi, path: Path, results_path: Path, chunk_size: int) -> Tally:
    lines, blank = read_lines(path)
    tally = Tally()
    try:
        out = results_path.open("w", encoding="utf-8")
    except OSError as exc:
        raise InputError(f"--results: cannot write {results_path}: {exc.strerror or exc}") from None
    with out, _progress(len(lines) - blank) as advance:
        for chunk in _chunks(lines, chunk_size):
            for number, record in _submitted(api, chunk):
                tally.count(number, record)
                out.write(json.dumps({"line": number, **record}) + "\n")
            out.flush()  # what was done stays recorded if a later chunk fails (rerun: nothing twice)
            advance(sum(1 for line in chunk if line.body is not None or line.error is not None))
    return tally


def _chunks(lines: list[Line], size: int) -> Iterator[list[Line]]:
    """The lines in order, `size` jobs to send in each chunk (refused lines ride along)."""
    chunk: list[Line] = []
    to_send = 0
    for line in lines:
        chunk.append(line)
        to_send += line.body is not None
        if to_send == size:
            yield chunk
            chunk, to_send = [], 0
    if chunk:
        yield chunk


def _submitted(api: JobsApi, chunk: list[Line]) -> Iterator[tuple[int, dict[str, Any]]]:
    bodies = [line.body for line in chunk if line.body is not None]
    answers = iter(api.submit_batch(bodies) if bodies else [])
    for line in chunk:
        if line.body is not None:
            yield line.number, _record(next(answers))
        elif line.error is not None:
            yield line.number, {"error": line.error}
        else:
            yield line.number, {"skipped": "blank line"}


def _record(result: BatchResult) -> dict[str, Any]:
    if result.job is None:
        return result.to_json()
    return {"job_id": result.job.id, "status": result.job.status, "created": result.created}


class _progress:
    """A progress bar on stderr while the lines go out (only when stderr is a terminal)."""

    def __init__(self, total: int) -> None:
        console = Console(stderr=True)
        self._bar = Progress(
            TextColumn("submitting"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=console,
            disable=not console.is_terminal,
        )
        self._task = self._bar.add_task("lines", total=total)

    def __enter__(self) -> Any:
        self._bar.start()
        return lambda done: self._bar.advance(self._task, done)

    def __exit__(self, *exc_info: object) -> None:
        self._bar.stop()


def report(tally: Tally, results_path: Path) -> None:
    for failure in tally.failures[:SHOWN_FAILURES]:
        click.echo(failure, err=True)
    if len(tally.failures) > SHOWN_FAILURES:
        click.echo(f"... and {len(tally.failures) - SHOWN_FAILURES} more failed lines", err=True)
    sent = tally.created + tally.existing + tally.failed
    click.echo(
        f"{sent} jobs: {tally.created} submitted, {tally.existing} already submitted, "
        f"{tally.failed} failed"
        + (f" ({tally.blank} blank lines skipped)" if tally.blank else "")
        + f"; results in {results_path}"
    )
