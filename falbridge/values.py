"""What the Python API and `falbridge.Client` hand back: immutable values, field for field
the JSON the HTTP API answers for the same job (`Job.to_json()` is that JSON).

Built from that JSON in both cases (falbridge.models.serialize makes it in process), so the
library in process and the client over HTTP cannot drift apart. Nested JSON (an input, a
result, metadata) is frozen: mappings are read-only, arrays are tuples.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, ClassVar, Self

TERMINAL_STATUSES = frozenset({"completed", "failed", "cancelled"})


def freeze(value: Any) -> Any:
    if isinstance(value, Mapping):
        return MappingProxyType({key: freeze(item) for key, item in value.items()})
    if isinstance(value, (list, tuple)):
        return tuple(freeze(item) for item in value)
    return value


def thaw(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {key: thaw(item) for key, item in value.items()}
    if isinstance(value, tuple):
        return [thaw(item) for item in value]
    return value


def _time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value is not None else None


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat() if value is not None else None


class _Value:
    """from_json / to_json over the dataclass's own fields; times parsed, JSON frozen."""

    _times: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        values = {}
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]  # subclasses are dataclasses
            raw = data[f.name]
            values[f.name] = _time(raw) if f.name in cls._times else freeze(raw)
        return cls(**values)

    def to_json(self) -> dict[str, Any]:
        out = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            out[f.name] = _iso(value) if f.name in self._times else thaw(value)
        return out


@dataclasses.dataclass(frozen=True)
class ResultFile(_Value):
    """A fal File object found in a job's result; `path` says where (`image`, `images[0]`).
    falbridge's own copy: `status` "stored" (with `sha256`, `size`, `download_url`, the
    route serving it relative to the API's base URL), "missing" (`missing_reason`), or None
    while not stored (yet, or not at all)."""

    _times: ClassVar[frozenset[str]] = frozenset({"stored_at"})

    id: int
    path: str
    url: str
    content_type: str | None
    file_name: str | None
    file_size: int | None
    width: int | None
    height: int | None
    fal_url: str
    status: str | None
    missing_reason: str | None
    sha256: str | None
    size: int | None
    sniffed_type: str | None
    stored_at: datetime | None
    download_url: str | None


@dataclasses.dataclass(frozen=True)
class JobEvent(_Value):
    """One status transition: when, who caused it (api, cli, submit, webhook, poll, ...)."""

    _times: ClassVar[frozenset[str]] = frozenset({"at"})

    at: datetime
    source: str
    from_status: str | None
    to_status: str
    detail: Mapping[str, Any] | None


@dataclasses.dataclass(frozen=True, repr=False)
class JobSummary(_Value):
    """A job as listings show it: everything but its input, result, files, events and URLs."""

    _times: ClassVar[frozenset[str]] = frozenset(
        {"created_at", "updated_at", "submitted_at", "completed_at", "cancel_requested_at"}
        | {"last_polled_at", "resubmitted_at"}
    )

    id: str
    endpoint_id: str
    status: str
    external_id: str | None
    metadata: Mapping[str, Any] | None
    request_id: str | None
    gateway_request_id: str | None
    result_pending: bool
    error: str | None
    error_type: str | None
    error_detail: Any
    created_at: datetime
    updated_at: datetime
    submitted_at: datetime | None
    completed_at: datetime | None
    cancel_requested_at: datetime | None
    last_polled_at: datetime | None
    resubmitted_at: datetime | None
    submit_attempts: int
    poll_attempts: int
    webhook_count: int

    @property
    def is_terminal(self) -> bool:
        """completed, failed or cancelled: nothing will change it any more."""
        return self.status in TERMINAL_STATUSES

    def __repr__(self) -> str:
        said = f" error_type={self.error_type!r}" if self.error_type else ""
        return f"<{type(self).__name__} {self.id} {self.endpoint_id} {self.status}{said}>"


@dataclasses.dataclass(frozen=True, repr=False)
class Job(JobSummary):
    """A job, whole: `GET /api/jobs/<id>` field for field."""

    input: Mapping[str, Any]
    status_url: str | None
    response_url: str | None
    cancel_url: str | None
    result: Any
    files: tuple[ResultFile, ...]
    events: tuple[JobEvent, ...]
    # fal's options for this job (only those given; None for none) and its queue priority.
    options: Mapping[str, Any] | None
    priority: str

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        plain = {k: v for k, v in data.items() if k not in ("files", "events")}
        job = super().from_json({**plain, "files": (), "events": ()})
        files = tuple(ResultFile.from_json(f) for f in data["files"])
        events = tuple(JobEvent.from_json(e) for e in data["events"])
        return dataclasses.replace(job, files=files, events=events)

    def to_json(self) -> dict[str, Any]:
        out = super().to_json()
        out["files"] = [f.to_json() for f in self.files]
        out["events"] = [e.to_json() for e in self.events]
        return out

    def __repr__(self) -> str:
        files = f" files={len(self.files)}" if self.files else ""
        return f"{super().__repr__()[:-1]}{files}>"


@dataclasses.dataclass(frozen=True)
class JobPage:
    """One page of a listing; pass `next_cursor` back for the next (None: the last page)."""

    jobs: tuple[JobSummary, ...]
    next_cursor: str | None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> JobPage:
        return cls(tuple(JobSummary.from_json(j) for j in data["jobs"]), data["next_cursor"])

    def to_json(self) -> dict[str, Any]:
        return {"jobs": [j.to_json() for j in self.jobs], "next_cursor": self.next_cursor}


@dataclasses.dataclass(frozen=True)
class LogLine(_Value):
    """One line of fal's log for a running job; `timestamp` as fal wrote it."""

    message: str
    timestamp: str | None
    level: str | None


@dataclasses.dataclass(frozen=True, repr=False)
class LiveStatus:
    """A job with what fal says of it right now: `GET /api/jobs/<id>/live`.

    `fal_status` is fal's own word (IN_QUEUE, IN_PROGRESS, COMPLETED), None when fal was not
    asked (the job is finished or not at fal yet) or did not answer (`unavailable` says why).
    `logs` are all of fal's lines so far; `new_logs` those this caller has not been given
    before (`falbridge.wait` passes each line once; a single call gets them all).
    """

    job: Job
    fal_status: str | None
    queue_position: int | None
    logs: tuple[LogLine, ...]
    unavailable: str | None
    new_logs: tuple[LogLine, ...]

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LiveStatus:
        fal = data["fal"]
        logs = tuple(LogLine.from_json(line) for line in fal["logs"])
        job = Job.from_json({key: value for key, value in data.items() if key != "fal"})
        return cls(job, fal["status"], fal["queue_position"], logs, fal["unavailable"], logs)

    def to_json(self) -> dict[str, Any]:
        fal = {
            "status": self.fal_status,
            "queue_position": self.queue_position,
            "logs": [line.to_json() for line in self.logs],
            "unavailable": self.unavailable,
        }
        return {**self.job.to_json(), "fal": fal}

    def __repr__(self) -> str:
        position = f" position={self.queue_position}" if self.queue_position is not None else ""
        said = f"fal={self.fal_status}{position} logs={len(self.logs)}"
        return f"<LiveStatus {self.job.id} {self.job.status} {said}>"
