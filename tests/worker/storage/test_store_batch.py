"""The files of a commit's jobs stored in waves (worker/storage/store_batch.py), against
real rows, the sandbox's CDN over HTTP and both backends: in order, two transactions a
wave, each job by the single-job rules, and two batches racing leaving one record a file."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from falbridge.worker import side_by_side
from falbridge.worker.storage import backend as backends
from falbridge.worker.storage.store import StoreOutcome
from falbridge.worker.storage.store_batch import store_all
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
