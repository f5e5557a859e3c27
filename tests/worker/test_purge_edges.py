"""The purge's edges (falbridge.worker.purge): its report (what it starts from, its line),
the limits of its arguments, the default batch exactly, the time it reports, and stored
objects the backend will not delete: counted as left, every other one deleted all the
same, for a job's files and for input copies alike."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import insert

from falbridge.models.db import transaction
from falbridge.models.tables import InputUpload, Job
from falbridge.worker.purge import PurgeReport, purge
from falbridge.worker.storage.backend import input_key, open_backend
from tests.worker.purge_history import EVF, add_job

OLD = datetime.now(UTC) - timedelta(days=120)
RECENT = datetime.now(UTC) - timedelta(days=10)
CUTOFF = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def backend(tmp_path, monkeypatch):
    # The configured backend is another directory: only the one passed may be used.
    monkeypatch.setenv("FALBRIDGE_VAR_DIR", str(tmp_path / "var"))
    return open_backend(f"file://{tmp_path / 'files'}")


def test_a_report_starts_from_nothing_counted():
    report = PurgeReport(cutoff=CUTOFF, compact=False, dry_run=False)
    counted = (report.jobs, report.bytes, report.files_deleted, report.files_left, report.input_copies)
    assert (*counted, report.batches, report.seconds) == (0, 0, 0, 0, 0, 0, 0.0)


@pytest.mark.parametrize(("files_left", "tail"), [(0, ""), (2, " files_left=2")])
def test_the_line_names_the_files_left_only_when_there_are_some(files_left, tail):
    report = PurgeReport(
        cutoff=CUTOFF,
        compact=False,
        dry_run=False,
        rows={"jobs": 3, "job_events": 6},
        bytes=10,
        files_deleted=1,
        files_left=files_left,
        input_copies=4,
        batches=2,
        seconds=0.5,
    )
    assert report.line() == (
        "removed (finished before 2026-03-01T12:00:00+00:00): jobs=3 job_events=6 file_bytes=10"
        f" input_copies=4 files_deleted=1 batches=2 seconds=0.50{tail}"
    )


def test_the_options_are_named_never_positional(db_url, backend):
    with pytest.raises(TypeError):
        purge(timedelta(days=90), True)  # type: ignore[misc]


def test_a_negative_age_is_refused_and_one_under_a_day_is_honoured(db_url, backend):
    with pytest.raises(ValueError, match="positive"):
        purge(timedelta(seconds=-1), backend=backend)
    with transaction() as session:
        add_job(session, backend, "completed", datetime.now(UTC) - timedelta(hours=1))
    assert purge(timedelta(minutes=1), backend=backend).jobs == 1


def test_the_seconds_reported_are_the_runs_own(db_url, backend):
    started = time.monotonic()
    report = purge(timedelta(days=90), backend=backend)
    took = time.monotonic() - started
    assert 0 < report.seconds <= took


def test_a_batch_is_500_jobs_or_uploads_unless_told(db_url, backend):
    """500 jobs are one batch and 501 uploads two: 500 exactly, for both loops."""
    with transaction() as session:
        session.execute(
            insert(Job), [{"endpoint_id": EVF, "input": {}, "status": "completed", "updated_at": OLD}] * 500
        )
        session.execute(
            insert(InputUpload),
            [
                {
                    "url": f"https://v3.fal.media/files/{n}/in.png",
                    "sha256": "ab" * 32,
                    "size": 1,
                    "content_type": "image/png",
                    "uploaded_at": OLD,
                }
                for n in range(501)
            ],
        )

    report = purge(timedelta(days=90), backend=backend)

    assert (report.jobs, report.rows["input_uploads"], report.batches) == (500, 501, 3)


def _refusing(backend, key: str) -> None:
    """The backend will not delete `key`: a directory stands where its file was, and a
    directory is not unlinked (what a read-only directory does too, but not to root)."""
    path = backend.path(key)
    path.unlink(missing_ok=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.mkdir()


def test_a_file_the_backend_will_not_delete_is_left_and_the_others_go(db_url, backend):
    with transaction() as session:
        jobs = [add_job(session, backend, "completed", OLD + timedelta(seconds=i)) for i in range(4)]
        refused, gone, kept = jobs[:2], jobs[2], jobs[3]
        keys = {job.id: job.stored_files[0].storage_key for job in jobs}
    for job in refused:
        _refusing(backend, keys[job.id])
    backend.delete(keys[gone.id])  # someone's cleanup got there first: deleted all the same

    report = purge(timedelta(days=90), backend=backend)

    assert (report.jobs, report.files_deleted, report.files_left) == (4, 2, 2)
    assert report.line().endswith(" files_left=2")
    assert not backend.exists(keys[kept.id])
    assert all(backend.path(keys[job.id]).is_dir() for job in refused)


def _old_upload(session, digest: str, uploaded_at=OLD) -> None:
    url = f"https://v3.fal.media/files/{digest[:8]}-{uploaded_at.timestamp()}/in.png"
    upload = InputUpload(url=url, sha256=digest, size=1, content_type="image/png", uploaded_at=uploaded_at)
    session.add(upload)


def test_an_input_copy_the_backend_will_not_delete_is_left_and_the_others_go(db_url, backend):
    """In digest order: one still named by a recent upload (kept), one the backend refuses
    (left), one nothing names any more (deleted)."""
    named, refused, free = "1" * 64, "2" * 64, "3" * 64
    with transaction() as session:
        for digest in (named, refused, free):
            _old_upload(session, digest)
        _old_upload(session, named, RECENT)
    for digest in (named, free):
        backend.put(input_key(digest), [b"\x89PNG"])
    _refusing(backend, input_key(refused))

    report = purge(timedelta(days=90), backend=backend)

    assert (report.rows["input_uploads"], report.input_copies, report.files_left) == (3, 1, 1)
    assert backend.exists(input_key(named))
    assert not backend.exists(input_key(free))
    assert backend.path(input_key(refused)).is_dir()
