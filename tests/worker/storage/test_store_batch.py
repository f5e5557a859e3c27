"""The files of a commit's jobs stored in waves (worker/storage/store_batch.py), against
real rows, the sandbox's CDN over HTTP and both backends: in order, two transactions a
wave, each job by the single-job rules, two batches racing leaving one record a file, and
the statements a wave sends, as many for four jobs as for one."""

from __future__ import annotations

import itertools
import uuid
from pathlib import Path

import pytest
from sqlalchemy import text

from falbridge.models.db import transaction
from falbridge.worker import side_by_side
from falbridge.worker.storage import backend as backends
from falbridge.worker.storage.store import StoreOutcome
from falbridge.worker.storage.store_batch import store_all
from tests.plugins.db import statements_sent
from tests.plugins.storage import cdn_file
from tests.plugins.waiting import run_at_once
from tests.worker.storage.helpers import completed_job, count_records, files_stored_events, png, records
from tests.worker.storage.test_store import _broken_storage

pytestmark = pytest.mark.usefixtures("db_url")


def test_every_jobs_files_are_stored_with_one_event_each_in_two_transactions_a_wave(
    sandbox, storage, commits
):
    jobs = [
        str(completed_job({"image": cdn_file(sandbox, png(2 + n, 2))}))
        for n in range(side_by_side.PARALLEL + 1)
    ]
    commits.clear()
    done = store_all(jobs)
    assert [job for job, _ in done] == jobs
    assert [(r.outcome, r.stored, r.missing) for _, r in done if r] == [(StoreOutcome.DONE, 1, 0)] * len(jobs)
    assert len(commits) == 2 * 2  # two waves
    for job in jobs:
        [row] = records(uuid.UUID(job))
        assert (row.status, row.attempts, row.width) == ("stored", 1, 2 + jobs.index(job))
        assert len(files_stored_events(uuid.UUID(job))) == 1


def test_jobs_with_nothing_to_store_and_files_gone_are_reported_each_on_its_own(sandbox, storage):
    kept = str(completed_job({"image": cdn_file(sandbox, png())}))
    gone = cdn_file(sandbox, b"x", "gone.png")
    gone["url"] += "-nope"  # a URL the CDN answers 404
    forgotten = str(completed_job({"image": gone}))
    nothing = str(completed_job({"text": "no file"}))
    done = dict(store_all([kept, "not-a-uuid", forgotten, str(uuid.uuid4()), nothing]))
    assert done[kept].outcome is StoreOutcome.DONE and done[kept].stored == 1
    assert done["not-a-uuid"].outcome is StoreOutcome.NOTHING_TO_STORE
    assert done[nothing].outcome is StoreOutcome.NOTHING_TO_STORE
    assert (done[forgotten].outcome, done[forgotten].missing, done[forgotten].failures) == (
        StoreOutcome.DONE,
        1,
        1,
    )
    [row] = records(uuid.UUID(forgotten))
    assert row.status == "missing" and "HTTP 404" in row.reason


@pytest.mark.parametrize("retries, recorded", [(2, 0), (0, 1)])
def test_a_backend_down_is_a_retry_unless_no_retry_is_left(
    sandbox, storage, monkeypatch, tmp_path, retries, recorded
):
    monkeypatch.setenv("FALBRIDGE_STORE_RETRIES", str(retries))
    job = completed_job({"image": cdn_file(sandbox, png())})
    _broken_storage(storage, monkeypatch, tmp_path)
    [(_, report)] = store_all([str(job)])
    assert report is not None and report.failures == 1
    assert report.outcome is (StoreOutcome.RETRY if retries else StoreOutcome.DONE)
    assert count_records(job) == recorded


def test_two_batches_racing_leave_one_record_per_file_and_one_event_per_job(sandbox, storage):
    jobs = [
        str(completed_job({"images": [cdn_file(sandbox, png(2, 2), f"m{i}.png") for i in range(3)]}))
        for _ in range(3)
    ]
    results = run_at_once(lambda: store_all(jobs))
    assert sum(r.stored for done in results for _, r in done if r) == 9
    backend = backends.configured()
    for job in jobs:
        assert count_records(uuid.UUID(job)) == 3 and len(files_stored_events(uuid.UUID(job))) == 1
        for row in records(uuid.UUID(job)):
            assert backend.exists(row.storage_key)
        if storage.kind == "local":  # the loser's copies were deleted
            root = Path(storage.url.removeprefix("file://"))
            assert len(list((root / "jobs" / job).iterdir())) == 3


def _statements_storing(jobs: list[str]) -> list[str]:
    """The statements storing `jobs` (one wave) sends, as the engine sees them."""
    with statements_sent() as sent:
        done = store_all(jobs)
    assert all(report is not None and report.stored for _, report in done)
    return [sql[:60] for sql in sent]


def test_a_wave_sends_the_same_statements_for_four_jobs_of_three_files_as_for_one_file(
    sandbox, storage, db_url
):
    """Looked up with one statement, recorded with a fixed few (falbridge.models.record_files):
    nothing is sent per job or per file. (SQLite: the ORM's flush inserts the events one at
    a time, as SQLite does not promise RETURNING's order; there, each INSERT once a job.)"""
    single = str(completed_job({"image": cdn_file(sandbox, png(2, 2))}))
    wave = [
        str(completed_job({"images": [cdn_file(sandbox, png(3, n + 1), f"w{n}.png") for n in range(3)]}))
        for _ in range(side_by_side.PARALLEL)
    ]

    one_file = _statements_storing([single])
    four_jobs = _statements_storing(wave)

    if db_url.startswith("sqlite"):
        four_jobs = [sql for sql, _ in itertools.groupby(four_jobs)]
    assert four_jobs == one_file
    assert [sql.split()[0] for sql in one_file if not sql.startswith("BEGIN")] == [
        "SELECT",  # the wave's files to store
        "SELECT",  # its jobs locked
        "INSERT",  # the records
        "SELECT",  # the tallies
        "UPDATE",  # the completed jobs stamped
        "SELECT",  # the subscriptions their events go to (read once a transaction)
        "INSERT",  # the events
    ]
    for job in wave:
        assert count_records(uuid.UUID(job)) == 3 and len(files_stored_events(uuid.UUID(job))) == 1


@pytest.fixture
def refuse_records_of(db_url):
    """A trigger that makes the database refuse the record of any file whose URL ends with
    a name: a row that cannot be written, whatever the reason in production. Dropped after
    the test: the database outlives it."""
    postgresql = db_url.startswith("postgresql")

    def refuse(name: str) -> None:
        when = f"NEW.fal_url LIKE '%/{name}'"
        with transaction() as s:
            if postgresql:
                s.execute(
                    text(
                        "CREATE FUNCTION refuse_record() RETURNS trigger LANGUAGE plpgsql AS "
                        "$$ BEGIN RAISE EXCEPTION 'refused'; END $$"
                    )
                )
                s.execute(
                    text(
                        "CREATE TRIGGER refuse_record BEFORE INSERT ON stored_files FOR EACH ROW "
                        f"WHEN ({when}) EXECUTE FUNCTION refuse_record()"
                    )
                )
            else:
                s.execute(
                    text(
                        "CREATE TRIGGER refuse_record BEFORE INSERT ON stored_files "
                        f"WHEN {when} BEGIN SELECT RAISE(ABORT, 'refused'); END"
                    )
                )

    yield refuse
    with transaction() as s:
        s.execute(text("DROP TRIGGER IF EXISTS refuse_record" + (" ON stored_files" if postgresql else "")))
        if postgresql:
            s.execute(text("DROP FUNCTION IF EXISTS refuse_record()"))


def test_a_record_that_cannot_be_written_spoils_neither_the_other_jobs_nor_its_jobs_other_files(
    sandbox, storage, refuse_records_of
):
    """The wave's transaction fails, then its job's: the other job is recorded with its
    event, the refused file's job keeps its other file and waits for the sweeper."""
    fine = str(completed_job({"image": cdn_file(sandbox, png())}))
    spoilt = str(
        completed_job({"images": [cdn_file(sandbox, png(), "kept.png"), cdn_file(sandbox, png(), "bad.png")]})
    )
    refuse_records_of("bad.png")

    done = dict(store_all([fine, spoilt]))

    assert done[fine] is not None and (done[fine].stored, done[fine].outcome) == (1, StoreOutcome.DONE)
    assert done[spoilt] is None  # the sweeper stores it again
    assert count_records(uuid.UUID(fine)) == 1 and len(files_stored_events(uuid.UUID(fine))) == 1
    [kept] = records(uuid.UUID(spoilt))
    assert kept.fal_url.endswith("/kept.png") and files_stored_events(uuid.UUID(spoilt)) == []
