"""Stored result files: which of a job's files still need storing, and recording one
file's outcome once (the job locked, `INSERT ... ON CONFLICT DO NOTHING`), with the
`job.files_stored` event in the transaction of the last one: models.record_files, which
records a wave's files the same way."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Row, Table, and_, bindparam, exists, select
from sqlalchemy.orm import Session

from falbridge.models.record_files import Recorded, files_stored_for, record_files, tally
from falbridge.models.tables import Job, ResultFile, StoredFile

__all__ = [
    "Recorded",
    "Unrecorded",
    "files_stored",
    "record",
    "recorded",
    "stored_for",
    "unrecorded_of",
]


# A row of _UNRECORDED: job_id, endpoint_id, path, url, file_name.
FileRow = Row[Any, Any, Any, Any, Any]


@dataclass(frozen=True)
class Unrecorded:
    """A job's endpoint (whether its files are stored depends on it) and its result files
    (rows with job_id, path, url, file_name) with no stored-file record yet, in result
    order."""

    endpoint_id: str
    files: list[FileRow]


def unrecorded_of(session: Session, job_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, Unrecorded]:
    """Each of the jobs that exists, with what is left to store of it: one statement for
    all of them (a wave of the storing task looks up several jobs at once)."""
    ids = sorted(set(job_ids))
    if not ids:
        return {}
    found: dict[uuid.UUID, Unrecorded] = {}
    for row in session.execute(_UNRECORDED, {"job_ids": ids}):
        left = found.setdefault(row.job_id, Unrecorded(row.endpoint_id, []))
        if row.path is not None:  # None: the outer join's row of a job with nothing left
            left.files.append(row)
    return found


# Built once, executed with parameters: read on every run of the storing task.
_stored_table = cast(Table, StoredFile.__table__)
_stored = _stored_table.c
_files_table = cast(Table, ResultFile.__table__)
_files = _files_table.c
_jobs_table = cast(Table, Job.__table__)
_jobs = _jobs_table.c
# Every job asked for, once with each unrecorded file, or once with none (an outer join:
# a job with nothing left still has its endpoint read, to tell "not configured").
_UNRECORDED = (
    select(_jobs.id.label("job_id"), _jobs.endpoint_id, _files.path, _files.url, _files.file_name)
    .select_from(
        _jobs_table.outerjoin(
            _files_table,
            and_(
                _files.job_id == _jobs.id,
                ~exists().where(_stored.job_id == _files.job_id, _stored.path == _files.path),
            ),
        )
    )
    .where(_jobs.id.in_(bindparam("job_ids", expanding=True)))
    .order_by(_jobs.id, _files.id)
)


def recorded(session: Session, job_id: uuid.UUID, path: str) -> StoredFile | None:
    return session.scalar(select(StoredFile).where(StoredFile.job_id == job_id, StoredFile.path == path))


def record(session: Session, job_id: uuid.UUID, values: dict[str, Any]) -> Recorded:
    """Record one file's outcome (StoredFile's columns but the id), unless it is recorded
    already; with the last of the job's files, the files_stored event. A batch of one:
    the same statements, so the same rules, as a wave's (models.record_files)."""
    [answer] = record_files(session, [(job_id, values)])
    return answer


def files_stored(session: Session, job: Job) -> None:
    """The locked job's `job.files_stored` event, counting its outcomes."""
    files_stored_for(session, [job], tally(session, [job.id]))


def stored_for(
    session: Session, job_id: uuid.UUID, file_id: int
) -> tuple[ResultFile, StoredFile | None] | None:
    """A result file of the job by its id, with its stored-file record (None: not yet)."""
    found = session.execute(
        select(ResultFile, StoredFile)
        .outerjoin(
            StoredFile, (StoredFile.job_id == ResultFile.job_id) & (StoredFile.path == ResultFile.path)
        )
        .where(ResultFile.job_id == job_id, ResultFile.id == file_id)
    ).first()
    return None if found is None else (found[0], found[1])
