"""Retention (falbridge.worker.purge, falbridge.models.purge): old finished jobs go with
everything that hangs off them, or keep only their summary; running and recent jobs are
never touched; a dry run counts exactly what a real run then removes; re-running removes
nothing more; concurrent purges share the work without deleting anything twice."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

import falbridge
from falbridge.models.db import transaction
from falbridge.models.jobs import lock_job
from falbridge.models.tables import Job, JobEvent, StoredFile
from falbridge.worker.purge import purge
from falbridge.worker.storage.backend import open_backend
from tests.worker.purge_history import PER_COMPLETED, PER_UNFINISHED_FILE, add_job, counts

OLD = datetime.now(UTC) - timedelta(days=120)
RECENT = datetime.now(UTC) - timedelta(days=10)
RUNNING = ("pending", "outcome_unknown", "submitted", "in_progress")


@pytest.fixture
def backend(tmp_path):
    return open_backend(f"file://{tmp_path / 'files'}")


def _history(backend, old_finished: int = 3):
    """`old_finished` old completed jobs plus one old failed and one old cancelled; recent
    finished jobs; old running jobs of every running status."""
    with transaction() as session:
        old = [
            add_job(session, backend, "completed", OLD + timedelta(seconds=i)) for i in range(old_finished)
        ]
        old += [add_job(session, backend, status, OLD) for status in ("failed", "cancelled")]
        kept = [add_job(session, backend, "completed", RECENT), add_job(session, backend, "failed", RECENT)]
        kept += [add_job(session, backend, status, OLD - timedelta(days=300)) for status in RUNNING]
        return old, kept


def _stored_keys(job_ids) -> list[str]:
    with transaction() as session:
        return list(session.scalars(select(StoredFile.storage_key).where(StoredFile.job_id.in_(job_ids))))


def _expected(completed: int, other: int) -> dict[str, int]:
    return {
        name: completed * PER_COMPLETED[name] + other * PER_UNFINISHED_FILE[name] for name in PER_COMPLETED
    }


def test_old_finished_jobs_go_with_every_row_and_file_that_hangs_off_them(db_url, backend):
    old, kept = _history(backend)
    old_keys, kept_keys = _stored_keys([j.id for j in old]), _stored_keys([j.id for j in kept])
    with transaction() as session:
        before = counts(session)

    report = purge(timedelta(days=90), batch_size=2, backend=backend)

    assert report.rows == _expected(completed=3, other=2)
    assert (report.batches, report.files_deleted, report.files_left) == (3, 3, 0)
    assert report.bytes == 3 * len(b"\x89PNG\r\n\x1a\n" + b"mask" * 64)
    with transaction() as session:
        after = counts(session)
        left = set(session.scalars(select(Job.id)))
    assert {name: before[name] - after[name] for name in before} == report.rows
    assert left == {j.id for j in kept}  # running jobs, however old, and recent ones stay
    assert not any(backend.exists(key) for key in old_keys)
    assert all(backend.exists(key) for key in kept_keys)


def test_a_dry_run_counts_what_a_purge_then_removes_and_changes_nothing(db_url, backend):
    old, _ = _history(backend)
    with transaction() as session:
        before = counts(session)

    dry = purge(timedelta(days=90), dry_run=True, backend=backend)

    with transaction() as session:
        assert counts(session) == before
    assert all(backend.exists(key) for key in _stored_keys([j.id for j in old]))
    assert dry.line().startswith("would remove (finished before ")
    real = purge(timedelta(days=90), backend=backend)
    assert (dry.rows, dry.bytes) == (real.rows, real.bytes)
    assert real.line().startswith("removed (finished before ")


def test_purging_again_removes_nothing_more(db_url, backend):
    _history(backend)
    purge(timedelta(days=90), backend=backend)
    with transaction() as session:
        before = counts(session)

    again = purge(timedelta(days=90), backend=backend)

    assert again.jobs == again.files_deleted == again.batches == 0
    assert set(again.rows.values()) == {0}
    with transaction() as session:
        assert counts(session) == before


def test_compacting_keeps_the_summary_and_history_and_drops_input_result_and_files(db_url, backend):
    old, kept = _history(backend)
    old_keys = _stored_keys([j.id for j in old])

    report = purge(timedelta(days=90), compact=True, batch_size=2, backend=backend)

    assert report.rows == {
        "jobs": 5,
        "result_files": 3,
        "stored_files": 3,
        "webhook_deliveries": 10,
        "job_inputs": 0,
        "input_uploads": 0,
    }
    assert report.files_deleted == 3
    assert not any(backend.exists(key) for key in old_keys)
    with transaction() as session:
        for job in old:
            row = session.get(Job, job.id)
            assert row is not None
            assert (row.input, row.result, row.error_detail) == ({}, None, None)
            assert row.compacted_at is not None
            # The summary: what it was, when, and why it failed.
            assert (row.endpoint_id, row.status, row.updated_at, row.error_type) == (
                job.endpoint_id,
                job.status,
                job.updated_at,
                job.error_type,
            )
            assert session.scalar(
                select(JobEvent.seq).where(JobEvent.job_id == job.id).order_by(JobEvent.seq.desc())
            )
        for job in kept:
            assert session.get(Job, job.id).compacted_at is None

    assert purge(timedelta(days=90), compact=True, backend=backend).jobs == 0  # done once is done
    assert purge(timedelta(days=90), backend=backend).jobs == 5  # a full purge still takes them


def test_concurrent_purges_share_the_work_without_deleting_anything_twice(db_url, backend):
    with transaction() as session:
        jobs = [add_job(session, backend, "completed", OLD + timedelta(seconds=i)) for i in range(120)]
    keys = _stored_keys([j.id for j in jobs])
    start = threading.Barrier(4)

    def one_purge(_: int):
        start.wait()
        return purge(timedelta(days=90), batch_size=7, backend=backend)

    with ThreadPoolExecutor(4) as pool:
        reports = list(pool.map(one_purge, range(4)))

    assert sum(r.jobs for r in reports) == 120
    for name, per_job in PER_COMPLETED.items():
        assert sum(r.rows[name] for r in reports) == 120 * per_job, name
    assert sum(r.files_deleted for r in reports) == 120  # each object deleted by one purge
    assert not any(backend.exists(key) for key in keys)
    with transaction() as session:
        assert set(counts(session).values()) == {0}


def test_stored_objects_go_from_the_configured_backend(db_url, storage):
    configured = open_backend(storage.url)
    with transaction() as session:
        job = add_job(session, configured, "completed", OLD)
    (key,) = _stored_keys([job.id])

    report = falbridge.purge("90d")  # the Python API: the configured backend

    assert (report.jobs, report.files_deleted) == (1, 1)
    assert not configured.exists(key)


def test_an_age_that_is_not_positive_is_refused(db_url):
    with pytest.raises(ValueError, match="positive"):
        purge(timedelta(0))
    with pytest.raises(ValueError, match="not an age"):
        purge("90x")


def test_a_job_a_worker_holds_is_left_for_the_next_run_not_waited_for(db_url, backend):
    if not db_url.startswith("postgresql"):
        pytest.skip("SQLite has no row locks: its writers take turns")
    with transaction() as session:
        held, _other = (add_job(session, backend, "completed", OLD + timedelta(seconds=i)) for i in range(2))
    with transaction() as worker:  # a worker's transaction on the job, open through the purge
        assert lock_job(worker, held.id) is not None
        first = purge(timedelta(days=90), backend=backend)
    assert first.jobs == 1
    with transaction() as session:
        assert set(session.scalars(select(Job.id))) == {held.id}
    assert purge(timedelta(days=90), backend=backend).jobs == 1


def test_the_schedule_is_off_until_an_age_is_set(db_url, backend, monkeypatch):
    from falbridge.worker.celery_app import _from_config
    from falbridge.worker.scheduled import purge_now

    _history(backend)
    assert "purge" not in _from_config()["beat_schedule"]
    assert purge_now() is None

    monkeypatch.setenv("FALBRIDGE_STORAGE_URL", backend.url)
    monkeypatch.setenv("FALBRIDGE_PURGE_OLDER_THAN", "90d")
    monkeypatch.setenv("FALBRIDGE_PURGE_INTERVAL_S", "600")
    assert _from_config()["beat_schedule"]["purge"] == {"task": "falbridge.purge", "schedule": 600.0}
    report = purge_now()
    assert report is not None and (report.jobs, report.files_deleted) == (5, 3)
