"""Stored result files: which of a job's files still need storing, and recording each
one's outcome once (the job locked, `INSERT ... ON CONFLICT DO NOTHING`), with the
`job.files_stored` event in the transaction of the last one."""

from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import ColumnElement, Row, ScalarSelect, Table, bindparam, func, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.sql.dml import ReturningInsert

from falbridge.models.clock import db_now
from falbridge.models.db import insert_unless_taken
from falbridge.models.jobs import add_event
from falbridge.models.states import EventSource, JobStatus
from falbridge.models.tables import Job, ResultFile, StoredFile, utcnow


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


@dataclass(frozen=True)
class Recorded:
    """`mine`: this call wrote the record (else another had); `event`: it also wrote the
    job's files_stored event."""

    mine: bool
    event: bool


def record(session: Session, job_id: uuid.UUID, values: dict[str, Any]) -> Recorded:
    """Record one file's outcome (StoredFile's columns but the id), unless it is recorded
    already; with the last of the job's files, the files_stored event."""
    job = _lock_for_record(session, job_id)  # one recorder at a time per job: one event
    if job is None:
        return Recorded(False, False)
    row = {"stored_at": utcnow(), **values, "job_id": job_id}
    inserted = session.execute(_insert_once(session.get_bind().dialect.name), row).first()
    if inserted is None:
        return Recorded(False, False)
    tally = _tally(session, job_id)
    if tally.files > tally.stored + tally.missing:
        return Recorded(True, False)
    _files_stored(session, job, tally)
    return Recorded(True, True)


def _lock_for_record(session: Session, job_id: uuid.UUID) -> Job | None:
    """`lock_job` reading only what the files_stored event needs (not the job's input and
    result: JSON, possibly large), with a prebuilt Core statement. The Job it returns is
    transient, never added to the session: add_event and the outbox's fan-out read its
    fields, nothing writes it (the event's stamp is its own UPDATE)."""
    row = session.execute(_LOCK_FOR_RECORD, {"job_id": job_id}).first()
    return None if row is None else Job(**row._asdict())


# The job's columns add_event and the outbox's fan-out read (its transition's record,
# its own callbacks), and those files_stored stamps; by attribute name.
_LOCK_FOR_RECORD = (
    select(
        *(
            getattr(_jobs, key).label(key)
            for key in (
                "id",
                "status",
                "endpoint_id",
                "request_id",
                "created_at",
                "notify_url",
                "on_complete",
                "updated_at",
                "event_seq",
            )
        )
    )
    .where(_jobs.id == bindparam("job_id"))
    .with_for_update()
)
_STAMP = (
    update(_jobs_table)
    .where(_jobs.id == bindparam("job_id"))
    .values(updated_at=db_now(), event_seq=_jobs.event_seq + 1)
    .returning(_jobs.updated_at, _jobs.event_seq)
)


@dataclass(frozen=True)
class Tally:
    files: int
    stored: int
    missing: int


def _tally(session: Session, job_id: uuid.UUID) -> Tally:
    """(files, stored, missing): the job's result files and their outcomes, one statement."""
    files, stored, missing = session.execute(_TALLY, {"job_id": job_id}).one()
    return Tally(files, stored, missing)


def _counted(*where: ColumnElement[bool]) -> ScalarSelect[int]:
    return select(func.count()).where(*where).scalar_subquery()


_TALLY = select(
    _counted(_files.job_id == bindparam("job_id")).label("files"),
    _counted(_stored.job_id == bindparam("job_id"), _stored.status == "stored").label("stored"),
    _counted(_stored.job_id == bindparam("job_id"), _stored.status == "missing").label("missing"),
)


def files_stored(session: Session, job: Job) -> None:
    """The job's `job.files_stored` event (status unchanged), counting its outcomes; the
    job's updated_at moves, as its files changed (the changes feed)."""
    _files_stored(session, job, _tally(session, job.id))


def _files_stored(session: Session, job: Job, tally: Tally) -> None:
    stamped = session.execute(_STAMP, {"job_id": job.id}).one()
    set_committed_value(job, "updated_at", stamped.updated_at)
    set_committed_value(job, "event_seq", stamped.event_seq)
    status = JobStatus(job.status)
    detail = {"stored": tally.stored, "missing": tally.missing}
    add_event(session, job, stamped.event_seq, status, status, EventSource.STORE, detail)


@functools.cache
def _insert_once(dialect: str) -> ReturningInsert[Any]:
    # Core, on the table: executed with the row as parameters, not rebuilt per row.
    return insert_unless_taken(dialect, _stored_table, _stored.job_id, _stored.path).returning(_stored.id)


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
