"""Recording stored-file outcomes, any number of files of any number of jobs, with a fixed
number of statements: the jobs locked (one statement), the records inserted unless taken
(one), the jobs' outcomes counted (one), and for each job whose last file this made, its
files_stored event (one stamp for all of them, then the events and their deliveries
written together: models.transition_writes).

The rules are those of one file at a time: one recorder at a time per job (its row
locked, in id order, the order every locker of several jobs takes), a record made once
(`INSERT ... ON CONFLICT DO NOTHING`), and the `job.files_stored` event written by the
transaction that inserted the job's last record, and by it alone (it holds the lock while
it counts).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import ColumnElement, Row, ScalarSelect, Table, bindparam, func, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.sql.elements import BindParameter

from falbridge.models import transition_writes
from falbridge.models.clock import db_now
from falbridge.models.db import insert_unless_taken, unset_columns
from falbridge.models.jobs import add_event
from falbridge.models.states import EventSource, JobStatus
from falbridge.models.tables import Job, ResultFile, StoredFile, utcnow


@dataclass(frozen=True)
class Recorded:
    """`mine`: this call wrote the record (else another had); `event`: it also wrote the
    job's files_stored event (said of the job's last record it wrote)."""

    mine: bool
    event: bool


@dataclass(frozen=True)
class Tally:
    files: int
    stored: int
    missing: int

    @property
    def complete(self) -> bool:
        return self.files <= self.stored + self.missing


def record_files(session: Session, rows: Sequence[tuple[uuid.UUID, dict[str, Any]]]) -> list[Recorded]:
    """Record each (job id, outcome: StoredFile's columns but the ids) unless recorded
    already; the answers in the rows' order. A job that is gone records nothing."""
    locked = lock_for_record(session, {job_id for job_id, _ in rows})
    now = utcnow()
    params = [_full_row(job_id, values, now) for job_id, values in rows if job_id in locked]
    inserted = _insert(session, params)
    touched = sorted({job_id for job_id, _ in inserted})
    tallies = tally(session, touched)
    completed = [locked[job_id] for job_id in touched if tallies[job_id].complete]
    files_stored_for(session, completed, tallies)
    return _answers(rows, inserted, {job.id for job in completed})


def _full_row(job_id: uuid.UUID, values: dict[str, Any], now: Any) -> dict[str, Any]:
    """Every column the insert names: one statement's parameters must share their keys
    (a stored file has its sha256 and size, a missing one its reason)."""
    return {**_UNSET, "stored_at": now, **values, "job_id": job_id}


def _insert(session: Session, params: list[dict[str, Any]]) -> set[tuple[uuid.UUID, str]]:
    """(job id, path) of the records this inserted. Executed with many parameter sets,
    SQLAlchemy sends them as multi-row INSERTs (insertmanyvalues), RETURNING only the rows
    inserted: which ones is read from their keys, so the order does not matter."""
    if not params:
        return set()
    statement = _INSERT[session.get_bind().dialect.name]
    return {(row.job_id, row.path) for row in session.execute(statement, params)}


def _answers(
    rows: Sequence[tuple[uuid.UUID, dict[str, Any]]],
    inserted: set[tuple[uuid.UUID, str]],
    with_event: set[uuid.UUID],
) -> list[Recorded]:
    answers: list[Recorded] = []
    last_of: dict[uuid.UUID, int] = {}  # the job's last record made here: it carries the event
    made: set[tuple[uuid.UUID, str]] = set()
    for job_id, values in rows:
        key = (job_id, values["path"])
        mine = key in inserted and key not in made  # a path given twice is recorded once
        made.add(key)
        if mine and job_id in with_event:
            last_of[job_id] = len(answers)
        answers.append(Recorded(mine, False))
    for index in last_of.values():
        answers[index] = Recorded(True, True)
    return answers


def lock_for_record(session: Session, job_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, Job]:
    """The jobs locked as models.jobs.lock_jobs locks them (in id order, one statement),
    reading only what the files_stored event needs (not the job's input and result: JSON,
    possibly large). The Jobs are transient, never added to the session: add_event and the
    outbox's fan-out read their fields, nothing writes them (the stamp is its own UPDATE)."""
    ids = sorted(set(job_ids))
    if not ids:
        return {}
    return {row.id: Job(**row._asdict()) for row in session.execute(_LOCK_FOR_RECORD, {"job_ids": ids})}


def tally(session: Session, job_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Tally]:
    """Each job's result files and their outcomes, one statement for all of them."""
    if not job_ids:
        return {}
    found = session.execute(_TALLY, {"job_ids": list(job_ids)})
    return {row.id: Tally(row.files, row.stored, row.missing) for row in found}


def files_stored_for(session: Session, jobs: Sequence[Job], tallies: dict[uuid.UUID, Tally]) -> None:
    """Each locked job's `job.files_stored` event (status unchanged), counting its
    outcomes; its updated_at moves, as its files changed (the changes feed). One UPDATE
    stamps them all."""
    if not jobs:
        return
    stamped = {row.id: row for row in session.execute(_STAMP, {"job_ids": [job.id for job in jobs]})}
    with transition_writes.held(session):  # the wave's events and deliveries: two INSERTs
        for job in jobs:
            _files_stored(session, job, stamped[job.id], tallies[job.id])


def _files_stored(session: Session, job: Job, stamp: Row[Any], counts: Tally) -> None:
    set_committed_value(job, "updated_at", stamp.updated_at)
    set_committed_value(job, "event_seq", stamp.event_seq)
    status = JobStatus(job.status)
    detail = {"stored": counts.stored, "missing": counts.missing}
    add_event(session, job, stamp.event_seq, status, status, EventSource.STORE, detail)


# Built once, executed with parameters: run for every wave of the storing task.
_stored_table = cast(Table, StoredFile.__table__)
_stored, _files = _stored_table.c, cast(Table, ResultFile.__table__).c
_jobs_table = cast(Table, Job.__table__)
_jobs = _jobs_table.c
_JOB_IDS: BindParameter[Any] = bindparam("job_ids", expanding=True)

# The columns a record may leave out, as the ORM would write them.
_UNSET = unset_columns(_stored_table, "job_id", "path", "fal_url", "status", "stored_at")
_INSERT = {
    dialect: insert_unless_taken(dialect, _stored_table, _stored.job_id, _stored.path).returning(
        _stored.job_id, _stored.path
    )
    for dialect in ("postgresql", "sqlite")
}

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
    .where(_jobs.id.in_(_JOB_IDS))
    .order_by(_jobs.id)
    .with_for_update()
)
_STAMP = (
    update(_jobs_table)
    .where(_jobs.id.in_(_JOB_IDS))
    .values(updated_at=db_now(), event_seq=_jobs.event_seq + 1)
    .returning(_jobs.id, _jobs.updated_at, _jobs.event_seq)
)


def _counted(*where: ColumnElement[bool]) -> ScalarSelect[int]:
    # Correlated to the job's row: each count reads the job's own index range.
    return select(func.count()).where(*where).scalar_subquery()


_TALLY = select(
    _jobs.id,
    _counted(_files.job_id == _jobs.id).label("files"),
    _counted(_stored.job_id == _jobs.id, _stored.status == "stored").label("stored"),
    _counted(_stored.job_id == _jobs.id, _stored.status == "missing").label("missing"),
).where(_jobs.id.in_(_JOB_IDS))
