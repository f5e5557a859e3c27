"""Stored result files: which of a job's files still need storing, and recording one
file's outcome once (the job locked, `INSERT ... ON CONFLICT DO NOTHING`), with the
`job.files_stored` event in the transaction of the last one: models.record_files, which
records a wave's files the same way."""

from __future__ import annotations

import uuid
from typing import Any, cast

from sqlalchemy import Row, Table, bindparam, select
from sqlalchemy.orm import Session

from falbridge.models.record_files import Recorded, files_stored_for, record_files, tally
from falbridge.models.tables import Job, ResultFile, StoredFile

__all__ = ["Recorded", "endpoint_of", "files_stored", "record", "recorded", "stored_for", "unrecorded"]


def endpoint_of(session: Session, job_id: uuid.UUID) -> str | None:
    """The job's endpoint (whether its files are stored depends on it); None: no such job."""
    return session.scalar(_ENDPOINT_OF, {"job_id": job_id})


def unrecorded(session: Session, job_id: uuid.UUID) -> list[Row[Any]]:
    """The job's result files (job_id, path, url, file_name) with no stored-file record
    yet, in result order."""
    return list(session.execute(_UNRECORDED, {"job_id": job_id}))


# Built once, executed with parameters: read on every run of the storing task.
_stored_table = cast(Table, StoredFile.__table__)
_stored, _files = _stored_table.c, cast(Table, ResultFile.__table__).c
_jobs_table = cast(Table, Job.__table__)
_jobs = _jobs_table.c
_ENDPOINT_OF = select(_jobs.endpoint_id).where(_jobs.id == bindparam("job_id"))
_UNRECORDED = (
    select(_files.job_id, _files.path, _files.url, _files.file_name)
    .where(
        _files.job_id == bindparam("job_id"),
        _files.path.not_in(select(_stored.path).where(_stored.job_id == bindparam("job_id"))),
    )
    .order_by(_files.id)
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
