"""The storing step: download each result file of a completed job through the SSRF-safe
fetcher, streaming it into the storage backend chunk by chunk with a running sha256
(nothing but a chunk and the first 64 KiB is held in memory), and record the outcome.

Run by its own Celery task (falbridge.worker.tasks.store_files), enqueued after the
transition that completed the job commits, never by the receiver. A file whose failure
may pass (fal's CDN or the backend down, a timeout) is left unrecorded and the task
retries; on the last attempt it is recorded missing with the reason. A file fal no longer
has (4xx), one over FALBRIDGE_STORE_MAX_BYTES or one the fetcher refuses is recorded
missing at once. The job stays completed either way.

Two runs at once (a duplicated task) each write their own object (keys carry a random
token); the record is inserted once, and the loser deletes its object, comparing its
sha256 with the recorded one: a mismatch (fal served other bytes) is logged and reported.
"""

from __future__ import annotations

import enum
import hashlib
import logging
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
from sqlalchemy.orm import Session

from falbridge import config
from falbridge.models.db import transaction
from falbridge.models.jobs import parse_uuid
from falbridge.models.stored_files import Unrecorded, record, recorded, unrecorded_of
from falbridge.worker.download.safe_get import FetchPolicy, FetchRefused, Unresolvable, fetch_stream
from falbridge.worker.storage import backend as backends
from falbridge.worker.storage.sniff import HEAD_BYTES, media_type, sniff

log = logging.getLogger(__name__)


class StoreOutcome(enum.StrEnum):
    NOTHING_TO_STORE = "nothing to store"  # no such job, not completed, or no file left
    NOT_CONFIGURED = "not stored (FALBRIDGE_STORE_FILES)"
    DONE = "done"  # every file recorded, stored or missing
    RETRY = "retry"  # some file's failure may pass: run again later


@dataclass
class StoreReport:
    outcome: StoreOutcome
    stored: int = 0
    missing: int = 0
    mismatches: list[str] = field(default_factory=list)  # paths whose re-download differed
    retry_reasons: list[str] = field(default_factory=list)
    bytes: int = 0  # of the files this run stored
    failures: int = 0  # downloads or writes that failed (retried, or recorded missing)


@dataclass(frozen=True)
class FileToStore:
    path: str
    url: str
    file_name: str | None


class Transient(Exception):
    """A failure that may pass; the message is the reason recorded if it does not."""


class Gone(Exception):
    """A failure that will not pass; the message is the reason recorded."""


class Meter:
    """Counts, hashes and keeps the head of the bytes passing through."""

    def __init__(self) -> None:
        self.digest = hashlib.sha256()
        self.size = 0
        self.head = bytearray()

    def through(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        for chunk in chunks:
            self.digest.update(chunk)
            self.size += len(chunk)
            self.head += chunk[: HEAD_BYTES - len(self.head)]  # nothing once the head is whole
            yield chunk


def store_files(job_id: uuid.UUID | str, *, attempt: int = 1, final: bool = False) -> StoreReport:
    """Store every result file of the job not recorded yet; `final`: the last attempt,
    so a file that fails now is recorded missing whatever the reason."""
    job_uuid = parse_uuid(job_id)
    if job_uuid is None:
        return StoreReport(StoreOutcome.NOTHING_TO_STORE)
    with transaction() as s:
        found = files_to_store(s, job_uuid)
    if isinstance(found, StoreReport):
        return found
    report = StoreReport(StoreOutcome.DONE)
    for f in found:
        fetched = fetch(job_uuid, f)
        row = outcome_row(fetched, attempt, final, report)
        if row is not None:
            settle(fetched, _record(job_uuid, row), report)
    return finish(report)


def files_to_store(s: Session, job_id: uuid.UUID) -> list[FileToStore] | StoreReport:
    """The job's files not recorded yet; or, when there is nothing to do, the report."""
    return files_to_store_of(s, [job_id])[job_id]


def files_to_store_of(
    s: Session, job_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, list[FileToStore] | StoreReport]:
    """`files_to_store` of each job, with one statement for all of them."""
    found = unrecorded_of(s, job_ids)
    return {job_id: _left_to_store(found.get(job_id)) for job_id in job_ids}


def _left_to_store(found: Unrecorded | None) -> list[FileToStore] | StoreReport:
    # No status check: only a completion writes result files, and a job never leaves
    # completed, so any other job has no file below.
    if found is None:  # no such job
        return StoreReport(StoreOutcome.NOTHING_TO_STORE)
    if not config.current().storage.stores(found.endpoint_id):
        return StoreReport(StoreOutcome.NOT_CONFIGURED)
    files = [FileToStore(f.path, f.url, f.file_name) for f in found.files]
    return files or StoreReport(StoreOutcome.NOTHING_TO_STORE)


@dataclass(frozen=True)
class Fetched:
    """One file's download into the backend: what was stored, or why not."""

    job_id: uuid.UUID
    file: FileToStore
    backend: backends.Backend
    key: str
    values: dict[str, Any] | Gone | Transient


def fetch(job_id: uuid.UUID, f: FileToStore) -> Fetched:
    """The file downloaded into the backend, with no transaction open."""
    backend = backends.configured()
    key = backends.object_key(job_id, f.path, f.file_name)
    try:
        return Fetched(job_id, f, backend, key, _download(backend, key, f.url))
    except (Gone, Transient) as exc:
        return Fetched(job_id, f, backend, key, exc)


def outcome_row(fetched: Fetched, attempt: int, final: bool, report: StoreReport) -> dict[str, Any] | None:
    """The stored-file record the download calls for; None: none yet (it may pass: the
    reason is kept for the retry)."""
    f, values = fetched.file, fetched.values
    base = {"path": f.path, "fal_url": f.url, "file_name": f.file_name, "attempts": attempt}
    if isinstance(values, dict):
        return {**base, **values, "status": "stored", "storage_key": fetched.key}
    report.failures += 1
    if isinstance(values, Gone):
        return {**base, "status": "missing", "reason": str(values)}
    if not final:
        report.retry_reasons.append(f"{f.path}: {values}")
        return None
    return {**base, "status": "missing", "reason": f"{values} (after {attempt} attempts)"}


def settle(fetched: Fetched, mine: bool, report: StoreReport) -> None:
    """Count the record made; a copy another run recorded first is deleted."""
    values = fetched.values
    if not isinstance(values, dict):
        report.missing += mine
    elif mine:
        report.stored += 1
        report.bytes += values["size"]
    else:
        _lost_race(fetched.backend, fetched.key, fetched.job_id, fetched.file.path, values["sha256"], report)


def finish(report: StoreReport) -> StoreReport:
    if report.retry_reasons:
        report.outcome = StoreOutcome.RETRY
    return report


def _download(backend: backends.Backend, key: str, url: str) -> dict[str, Any]:
    """Stream `url` into `key`; the columns describing what was stored."""
    policy = store_policy()
    meter = Meter()
    try:
        with fetch_stream(url, policy) as fetched:
            backend.put(key, meter.through(fetched.chunks()))
            served = media_type(fetched.content_type)
    except (FetchRefused, httpx.HTTPError, backends.StorageUnavailable) as exc:
        raise download_failure(exc) from None
    sniffed = sniff(bytes(meter.head))
    return {
        "sha256": meter.digest.hexdigest(),
        "size": meter.size,
        "served_type": served,
        "sniffed_type": sniffed.content_type,
        "width": sniffed.width,
        "height": sniffed.height,
    }


def download_failure(exc: FetchRefused | httpx.HTTPError | backends.StorageUnavailable) -> Transient | Gone:
    """Whether a failed download may pass, with the reason recorded if it does not."""
    if isinstance(exc, Unresolvable):  # DNS may answer later
        return Transient(str(exc))
    if isinstance(exc, FetchRefused):
        return Gone(f"not fetched: {exc}")
    if isinstance(exc, httpx.HTTPStatusError):
        code = exc.response.status_code
        answer = f"fal's CDN answered HTTP {code} {exc.response.reason_phrase}".strip()
        # a timeout, "too early", a rate limit or the CDN's own failure: worth another try
        return Transient(answer) if code in (408, 425, 429) or code >= 500 else Gone(answer)
    if isinstance(exc, httpx.HTTPError):
        return Transient(f"download failed: {type(exc).__name__}: {str(exc)[:200]}")
    return Transient(f"storage backend unavailable: {str(exc)[:300]}")


def _record(job_id: uuid.UUID, values: dict[str, Any]) -> bool:
    """Whether this call recorded the file (else another run had)."""
    with transaction() as s:
        return record(s, job_id, values).mine


def _lost_race(
    backend: backends.Backend, key: str, job_id: uuid.UUID, path: str, sha256: str, report: StoreReport
) -> None:
    """Another run recorded this file first: ours is a duplicate, deleted; if its bytes
    differ from the recorded ones, say so (fal served different bytes for one URL)."""
    try:
        backend.delete(key)
    except backends.StorageUnavailable as exc:
        log.warning("store %s %s: duplicate %s not deleted: %s", job_id, path, key, exc)
    with transaction() as s:
        kept = recorded(s, job_id, path)
        kept_sha = kept.sha256 if kept is not None else None
    if kept_sha is not None and kept_sha != sha256:
        log.warning(
            "store %s %s: sha256 mismatch on re-download: kept %s, got %s", job_id, path, kept_sha, sha256
        )
        report.mismatches.append(path)


def store_policy() -> FetchPolicy:
    """The fetcher's policy for storing: FALBRIDGE_FETCH_ALLOW_PRIVATE, and the storage's
    own size limit (FALBRIDGE_STORE_MAX_BYTES)."""
    cfg = config.current()
    return FetchPolicy(allow_private=cfg.fetch.allow_private, max_bytes=cfg.storage.max_bytes)
