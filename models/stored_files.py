"""Stored result files: which of a job's files still need storing, and recording each
one's outcome once (the job locked, `INSERT ... ON CONFLICT DO NOTHING`), with the
`job.files_stored` event in the transaction of the last one."""

from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.sql.dml import ReturningInsert

from falbridge.models.clock import db_now
from falbridge.models.db import insert_unless_taken
from falbridge.models.jobs import add_event, lock_job
from falbridge.models.states import EventSource, JobStatus
from falbridge.models.tables import Job, ResultFile, StoredFile, utcnow


def unrecorded(session: Session, job_id: uuid.UUID) -> list[ResultFile]:
    """The job's result files with no stored-file record yet, in result order."""
    recorded = select(StoredFile.path).where(StoredFile.job_id == job_id)
    return list(
        session.scalars(
            select(ResultFile)
            .where(ResultFile.job_id == job_id, ResultFile.path.not_in(recorded))
            .order_by(ResultFile.id)
        )
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
    job = lock_job(session, job_id)  # one recorder at a time per job: one event
    if job is None:
        return Recorded(False, False)
    row = {"stored_at": utcnow(), **values, "job_id": job_id}
    inserted = session.execute(_insert_once(session.get_bind().dialect.name).values(row)).first()
    if inserted is None:
        return Recorded(False, False)
    if _outstanding(session, job_id):
        return Recorded(True, False)
    files_stored(session, job)
    return Recorded(True, True)


def _outstanding(session: Session, job_id: uuid.UUID) -> int:
    # COUNT(*) always answers one row: no None to default.
    total = session.execute(select(func.count()).select_from(ResultFile).where(ResultFile.job_id == job_id))
    done = session.execute(select(func.count()).select_from(StoredFile).where(StoredFile.job_id == job_id))
    return total.scalar_one() - done.scalar_one()


def files_stored(session: Session, job: Job) -> None:
    """The job's `job.files_stored` event (status unchanged), counting its outcomes; the
    job's updated_at moves, as its files changed (the changes feed)."""
    counts = dict(
        session.execute(
            select(StoredFile.status, func.count())
            .where(StoredFile.job_id == job.id)
            .group_by(StoredFile.status)
        ).all()
    )
    stamped = session.execute(
        update(Job)
        .where(Job.id == job.id)
        .values(updated_at=db_now(), event_seq=Job.event_seq + 1)
        .returning(Job.updated_at, Job.event_seq)
        .execution_options(synchronize_session=False)
    ).one()
    set_committed_value(job, "updated_at", stamped.updated_at)
    set_committed_value(job, "event_seq", stamped.event_seq)
    status = JobStatus(job.status)
    detail = {"stored": int(counts.get("stored", 0)), "missing": int(counts.get("missing", 0))}
    add_event(session, job, stamped.event_seq, status, status, EventSource.STORE, detail)


@functools.cache
def _insert_once(dialect: str) -> ReturningInsert[Any]:
    return insert_unless_taken(
        dialect, StoredFile, StoredFile.__table__.c.job_id, StoredFile.__table__.c.path
    ).returning(StoredFile.id)


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
