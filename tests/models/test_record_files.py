"""models/record_files.py against real rows: a wave's files of several jobs recorded in
one transaction, each once, with one files_stored event per job whose last file it made
(counting that job's outcomes); two waves over the same jobs at once (threads, real
connections) leaving one record a file and one event a job; and the statements a wave
sends, the same number for one file of one job as for several files of four."""

from __future__ import annotations

import itertools
import queue
import uuid
from collections import Counter
from typing import Any

import pytest
from sqlalchemy import delete, func, select

from falbridge.models import outbox
from falbridge.models.db import transaction
from falbridge.models.jobs import create_job
from falbridge.models.record_files import Recorded, record_files
from falbridge.models.stored_files import record
from falbridge.models.tables import EventDelivery, Job, JobEvent, ResultFile, StoredFile, Subscription
from tests.plugins.db import statements_sent
from tests.plugins.waiting import run_at_once

pytestmark = pytest.mark.usefixtures("db_url")

PATHS = ("x", "y", "z")
Row = tuple[uuid.UUID, dict[str, Any]]


def _jobs(count: int, paths: tuple[str, ...] = PATHS) -> list[uuid.UUID]:
    """Jobs with result files at `paths`, by id order."""
    with transaction() as s:
        made = [create_job(s, "fal-ai/evf-sam", {"n": n})[0].id for n in range(count)]
        s.add_all(
            ResultFile(job_id=job_id, path=path, url=f"https://cdn.test/{job_id}/{path}")
            for job_id in made
            for path in paths
        )
    return sorted(made)


def _row(job_id: uuid.UUID, path: str, status: str = "stored") -> Row:
    values: dict[str, Any] = {"path": path, "fal_url": f"https://cdn.test/{job_id}/{path}", "status": status}
    if status == "stored":
        values |= {"sha256": "0" * 64, "size": 3, "storage_key": f"jobs/{job_id}/{path}"}
    else:
        values |= {"reason": "fal's CDN answered HTTP 404"}
    return job_id, values


def _wave(rows: list[Row]) -> list[Recorded]:
    with transaction() as s:
        return record_files(s, rows)


def _records(job_id: uuid.UUID) -> dict[str, str]:
    with transaction() as s:
        found = s.execute(select(StoredFile.path, StoredFile.status).where(StoredFile.job_id == job_id))
        return {row.path: row.status for row in found}


def _stored_events(job_id: uuid.UUID) -> list[tuple[int, dict[str, Any] | None]]:
    with transaction() as s:
        found = s.execute(
            select(JobEvent.seq, JobEvent.detail).where(JobEvent.job_id == job_id, JobEvent.source == "store")
        )
        return [(seq, detail) for seq, detail in found]


def test_a_wave_records_each_file_once_with_one_event_per_job_it_completes():
    partly, unfinished, deleted, whole, done_before = _jobs(5)
    # Another run recorded some already: partly's x, and all of done_before (its event too).
    with transaction() as s:
        assert record(s, *_row(partly, "x")) == Recorded(True, False)  # the single-file path
    for path in PATHS:
        assert _wave([_row(done_before, path)])[0].mine
    with transaction() as s:
        s.execute(delete(Job).where(Job.id == deleted))  # deleted since the wave looked
    rows = [
        _row(whole, "z"),
        _row(partly, "z", "missing"),
        _row(deleted, "x"),
        _row(done_before, "y"),
        _row(partly, "x"),
        _row(unfinished, "y", "missing"),
        _row(whole, "x", "missing"),
        _row(partly, "y"),
        _row(whole, "y"),
        _row(unfinished, "x"),
    ]

    answers = _wave(rows)

    mine = [
        (job_id, values["path"])
        for (job_id, values), answer in zip(rows, answers, strict=True)
        if answer.mine
    ]
    assert sorted(mine) == sorted(
        [(whole, p) for p in PATHS] + [(partly, "y"), (partly, "z"), (unfinished, "x"), (unfinished, "y")]
    )
    with_event = Counter(job_id for (job_id, _), answer in zip(rows, answers, strict=True) if answer.event)
    assert with_event == {whole: 1, partly: 1}
    assert _records(partly) == {"x": "stored", "y": "stored", "z": "missing"}
    assert _records(whole) == {"x": "missing", "y": "stored", "z": "stored"}
    assert _records(unfinished) == {"x": "stored", "y": "missing"}
    assert _records(deleted) == {}
    assert _stored_events(partly) == [(2, {"stored": 2, "missing": 1})]
    assert _stored_events(whole) == [(2, {"stored": 2, "missing": 1})]
    assert _stored_events(done_before) == [(2, {"stored": 3, "missing": 0})]  # its own, not again
    assert _stored_events(unfinished) == []
    with transaction() as s:
        seqs = dict(
            s.execute(select(Job.id, Job.event_seq).where(Job.id.in_([partly, whole, unfinished]))).all()
        )
    assert seqs == {partly: 2, whole: 2, unfinished: 1}


def test_waves_over_the_same_jobs_at_once_leave_one_record_a_file_and_one_event_a_job():
    """Each wave locks its jobs in id order whatever order its rows come in, so they take
    turns job by job rather than deadlock, and the last to record a job's file counts the
    others' records: one of x and y, one of z alone (no record in common to wait on),
    one of them all, backwards."""
    for _ in range(3):
        jobs = _jobs(4)
        first = [_row(job_id, path) for job_id in jobs for path in ("x", "y")]
        last = [_row(job_id, "z") for job_id in reversed(jobs)]
        every = [_row(job_id, path, "missing") for job_id in reversed(jobs) for path in PATHS]

        answered = _at_once(first, last, every)

        made = Counter((job_id, values["path"]) for (job_id, values), answer in answered if answer.mine)
        assert made == {(job_id, path): 1 for job_id in jobs for path in PATHS}
        events = Counter(job_id for (job_id, _), answer in answered if answer.event)
        assert events == dict.fromkeys(jobs, 1)
        for job_id in jobs:
            assert len(_records(job_id)) == 3 and len(_stored_events(job_id)) == 1


def _at_once(*waves: list[Row]) -> list[tuple[Row, Recorded]]:
    """The waves recorded each in its own thread and transaction, released together; each
    row with its answer."""
    given: queue.Queue[list[Row]] = queue.Queue()
    for rows in waves:
        given.put(rows)

    def one() -> list[tuple[Row, Recorded]]:
        rows = given.get_nowait()
        return list(zip(rows, _wave(rows), strict=True))

    return [pair for done in run_at_once(one, times=len(waves)) for pair in done]


def _statements(rows: list[Row]) -> list[str]:
    """The statements recording `rows` in one transaction sends, as the engine sees them."""
    with statements_sent() as sent:
        _wave(rows)
    return [sql[:60] for sql in sent]


@pytest.fixture
def no_dispatch():
    """The deliveries stay in the database: no publish to a broker this test did not set
    up (one started here would leave the app pointing at it for the pipeline's worker)."""
    previous = outbox.set_dispatcher(None)
    yield
    outbox.set_dispatcher(previous)


def test_a_wave_sends_the_same_statements_for_four_jobs_of_three_files_as_for_one_file(db_url, no_dispatch):
    """Locked, inserted, counted and stamped once for the wave, the jobs' events and their
    deliveries written together (models.transition_writes): nothing is sent per job or per
    file. (SQLite: a row whose id is needed is inserted one at a time, as SQLite does not
    promise RETURNING's order; there, the same statements, each INSERT repeated once a job.)"""
    with transaction() as s:
        s.add(
            Subscription(
                url="https://hooks.test/", events=["job.files_stored"], dedupe_key="k", secret_encrypted=b"-"
            )
        )
    [single] = _jobs(1, ("x",))
    four = _jobs(4)

    one_file = _statements([_row(single, "x")])
    wave = _statements([_row(job_id, path) for job_id in reversed(four) for path in PATHS])

    if db_url.startswith("sqlite"):
        wave = [sql for sql, _ in itertools.groupby(wave)]
    assert wave == one_file
    with transaction() as s:
        assert s.scalar(select(func.count()).select_from(EventDelivery)) == 5  # one a job
        assert s.scalar(select(func.count()).select_from(StoredFile)) == 13
