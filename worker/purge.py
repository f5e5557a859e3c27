"""`falbridge purge`: old finished jobs removed with everything that hangs off them, or
compacted to their summary (falbridge.models.purge says which rows), batch by batch.

Each batch commits before its stored objects are deleted from the backend: a crash
between the two leaves an orphan object under `jobs/<job id>/` (bytes nobody points at,
harmless, found by listing the prefix), never a row pointing at nothing. An object that
is already gone counts as deleted (a second purge, or someone's cleanup, got there
first); one the backend refuses to delete now is logged and counted as `files_left`.

Input copies (`inputs/<2 hex>/<sha256>`) are shared by content: each is deleted once no
remaining job and no remaining upload record names its digest, checked after the batch
that removed a reference has committed (`_release_copies`).

Idempotent: a purged job is gone and a compacted one is marked, so running it again
removes nothing more. Two purges at once take disjoint batches (rows locked by one are
skipped by the other), and each deletes only the objects of the rows it deleted.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select

from falbridge.config import parse_age
from falbridge.models.clock import db_now
from falbridge.models.db import transaction
from falbridge.models.input_copies import unreferenced
from falbridge.models.purge import (
    COMPACT_TABLES,
    TABLES,
    Batch,
    Cursor,
    purge_batch,
    purge_uploads_batch,
    would_remove,
)
from falbridge.worker.storage import backend as backends

log = logging.getLogger(__name__)


@dataclass
class PurgeReport:
    """Rows removed per table (or, for a dry run, that would be), bytes of stored files."""

    cutoff: datetime
    compact: bool
    dry_run: bool
    rows: dict[str, int] = field(default_factory=dict)
    bytes: int = 0
    files_deleted: int = 0
    files_left: int = 0
    input_copies: int = 0  # deleted (or, for a dry run, that would be)
    batches: int = 0
    seconds: float = 0.0

    @property
    def jobs(self) -> int:
        return self.rows.get("jobs", 0)

    def line(self) -> str:
        """One line: `would remove` / `removed` / `compacted`, then the counts."""
        verb = "would compact" if self.dry_run and self.compact else "would remove" if self.dry_run else None
        verb = verb or ("compacted" if self.compact else "removed")
        counts = " ".join(f"{name}={count}" for name, count in self.rows.items())
        line = f"{verb} (finished before {self.cutoff.isoformat()}): {counts} file_bytes={self.bytes}"
        line += f" input_copies={self.input_copies}"
        if not self.dry_run:
            line += f" files_deleted={self.files_deleted} batches={self.batches} seconds={self.seconds:.2f}"
            line += f" files_left={self.files_left}" if self.files_left else ""
        return line


def cutoff_for(age: timedelta) -> datetime:
    """Now minus `age` by the database's clock, the one `updated_at` is stamped from."""
    with transaction() as session:
        cutoff: datetime | None = session.scalar(select(db_now(age.total_seconds())))
    assert cutoff is not None
    return cutoff


def purge(
    older_than: timedelta | str,
    *,
    compact: bool = False,
    dry_run: bool = False,
    batch_size: int = 500,
    backend: backends.Backend | None = None,
) -> PurgeReport:
    """Remove (or, with `compact`, compact) the jobs finished more than `older_than` ago;
    with `dry_run`, only count what would go. `older_than` may be written as `"90d"`.
    `falbridge.purge` in Python."""
    started = time.monotonic()
    age = parse_age(older_than) if isinstance(older_than, str) else older_than
    if age <= timedelta(0):
        raise ValueError("older_than must be a positive age")
    report = PurgeReport(cutoff=cutoff_for(age), compact=compact, dry_run=dry_run)
    if dry_run:
        with transaction() as session:
            report.rows, report.bytes, report.input_copies = would_remove(
                session, report.cutoff, compact=compact
            )
        return report
    report.rows = dict.fromkeys(COMPACT_TABLES if compact else TABLES, 0)
    after: Cursor | None = None
    while True:
        with transaction() as session:
            batch = purge_batch(session, report.cutoff, after, batch_size, compact=compact)
        if batch.after is None:
            break
        _counted(batch, report)
        _delete_objects(backend, batch.keys, report)
        _release_copies(backend, batch.digests, report)
        after = batch.after
    last_upload: int | None = None
    while True:
        with transaction() as session:
            batch = purge_uploads_batch(session, report.cutoff, last_upload, batch_size)
        if batch.last_upload is None:
            break
        _counted(batch, report)
        _release_copies(backend, batch.digests, report)
        last_upload = batch.last_upload
    report.seconds = time.monotonic() - started
    return report


def _counted(batch: Batch, report: PurgeReport) -> None:
    report.batches += 1
    for name, count in batch.rows.items():
        report.rows[name] += count
    report.bytes += batch.bytes


def _delete_objects(backend: backends.Backend | None, keys: list[str], report: PurgeReport) -> None:
    if not keys:
        return
    store = backend or backends.configured()
    for key in keys:
        try:
            store.delete(key)  # a key already gone is no error: what we wanted
        except OSError as exc:  # StorageUnavailable is one
            report.files_left += 1
            log.warning("purge: stored object %s not deleted (left as an orphan): %s", key, exc)
            continue
        report.files_deleted += 1


def _release_copies(backend: backends.Backend | None, digests: set[str], report: PurgeReport) -> None:
    """Delete each input copy nothing names any more. The check and the delete happen
    under the digest's lock, committed after the object is gone: a job or upload that
    references the digest meanwhile either is seen (the copy stays) or waits, and then
    finds no upload record or writes the copy again (falbridge.models.input_copies)."""
    if not digests:
        return
    store = backend or backends.configured()
    for digest in sorted(digests):
        try:
            with transaction() as session:
                if not unreferenced(session, digest):
                    continue
                store.delete(backends.input_key(digest))
        except OSError as exc:  # StorageUnavailable is one
            report.files_left += 1
            log.warning("purge: input copy %s not deleted (left as an orphan): %s", digest, exc)
            continue
        report.input_copies += 1
