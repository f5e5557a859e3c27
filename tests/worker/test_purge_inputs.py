"""Input copies and the purge: a content-addressed copy (`inputs/<2 hex>/<sha256>`) goes
once no remaining job and no remaining upload record names its digest, in both modes; the
dry run counts those copies; a job created while the purge runs never loses its copy."""

from __future__ import annotations

import hashlib
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, text, update

from falbridge.models.db import session_factory, transaction
from falbridge.models.input_copies import record_upload
from falbridge.models.jobs import create_job, input_files_of
from falbridge.models.tables import InputUpload, Job, JobInput
from falbridge.worker.input_copies import uploaded_inputs
from falbridge.worker.purge import purge
from falbridge.worker.storage.backend import input_key, open_backend
from tests.plugins.waiting import poll_until
from tests.worker.purge_history import add_job

OLD = datetime.now(UTC) - timedelta(days=120)
RECENT = datetime.now(UTC) - timedelta(days=10)
EVF = "fal-ai/evf-sam"


def _upload(backend, data: bytes, uploaded_at: datetime = OLD) -> tuple[str, str]:
    """An upload recorded as POST /api/files records one, with its copy; (url, sha256)."""
    digest = hashlib.sha256(data).hexdigest()
    url = f"https://v3.fal.media/files/{uuid.uuid4().hex[:12]}/in.png"  # a new URL each upload
    with transaction() as s:
        record_upload(s, url, digest, len(data), "image/png")
        s.execute(update(InputUpload).where(InputUpload.url == url).values(uploaded_at=uploaded_at))
    backend.put(input_key(digest), [data])
    return url, digest


def _job_naming(backend, url: str, status: str, finished: datetime) -> Job:
    """A finished job whose input names `url`, referencing its copy as accept() would."""
    with transaction() as s:
        job = add_job(s, backend, status, finished)
        job.input = {"prompt": "cat", "image_url": url}
        files = [f.as_json() for f in uploaded_inputs(s, job.input)]
        s.add_all(JobInput(job_id=job.id, sha256=f["sha256"], size=f["size"]) for f in files)
        return job


def _rows(table) -> int:
    with transaction() as s:
        return int(s.scalar(select(func.count()).select_from(table)) or 0)


@pytest.mark.parametrize("compact", [False, True], ids=["delete", "compact"])
def test_a_copy_goes_with_the_last_reference_to_its_digest(db_url, storage, compact):
    backend = open_backend(storage.url)
    shared_url, shared = _upload(backend, b"\x89PNG shared")
    again_url, _ = _upload(backend, b"\x89PNG shared", OLD + timedelta(seconds=1))  # same bytes, 2nd URL
    alone_url, alone = _upload(backend, b"\x89PNG alone")
    _job_naming(backend, shared_url, "completed", OLD)
    recent = _job_naming(backend, again_url, "completed", RECENT)
    _job_naming(backend, alone_url, "failed", OLD)

    dry = purge("90d", compact=compact, dry_run=True)
    report = purge("90d", compact=compact)

    assert (dry.input_copies, report.input_copies) == (1, 1)
    assert dry.rows["job_inputs"] == report.rows["job_inputs"] == 2
    assert dry.rows["input_uploads"] == report.rows["input_uploads"] == 3
    assert not backend.exists(input_key(alone))
    assert backend.exists(input_key(shared))  # the recent job still names it
    with transaction() as s:
        s.execute(update(Job).where(Job.id == recent.id).values(updated_at=OLD))
    assert purge("90d", compact=compact).input_copies == 1
    assert not backend.exists(input_key(shared))
    assert (_rows(JobInput), _rows(InputUpload)) == (0, 0)
    assert purge("90d", compact=compact).input_copies == 0  # nothing more: idempotent
    if storage.kind == "local":  # no emptied jobs/<id>/ or inputs/<2 hex>/ left behind
        root = Path(storage.url.removeprefix("file://"))
        assert [p.name for p in root.iterdir() if p.name != ".incoming"] == []


def test_a_recent_upload_keeps_its_copy_for_jobs_still_to_come(db_url, storage):
    backend = open_backend(storage.url)
    url, digest = _upload(backend, b"\x89PNG fresh", RECENT)
    _job_naming(backend, url, "completed", OLD)
    assert purge("90d").input_copies == 0
    assert backend.exists(input_key(digest))
    assert _rows(InputUpload) == 1


def _jobs_created_during_a_purge(backend, url: str, jobs: int) -> list[uuid.UUID]:
    """`jobs` jobs naming `url` created one by one while a purge runs; their ids."""
    start, created = threading.Barrier(2), []

    def create_jobs() -> None:
        start.wait()
        for _ in range(jobs):
            with transaction() as s:
                files = [f.as_json() for f in uploaded_inputs(s, {"image_url": url})]
                job, _ = create_job(s, EVF, {"prompt": "cat", "image_url": url}, input_files=files)
                created.append(job.id)

    creator = threading.Thread(target=create_jobs)
    creator.start()
    start.wait()
    purge("90d", batch_size=1, backend=backend)
    creator.join()
    return created


def test_a_job_created_during_the_purge_keeps_its_copy(db_url, tmp_path):
    """Jobs naming an old upload are created while purges remove the jobs and the upload
    that named it: afterwards, the copy is there exactly when some job recorded it."""
    backend = open_backend(f"file://{tmp_path / 'files'}")
    for round_ in range(6):
        url, digest = _upload(backend, f"\x89PNG round {round_}".encode())
        for i in range(3):
            _job_naming(backend, url, "completed", OLD + timedelta(seconds=i))
        created = _jobs_created_during_a_purge(backend, url, 15)
        with transaction() as s:
            referenced = s.scalar(select(func.count()).select_from(JobInput).where(JobInput.sha256 == digest))
            recorded = [input_files_of(s.get_one(Job, job_id)) for job_id in created]
        assert len(created) == 15
        assert sum(bool(files) for files in recorded) == referenced
        assert backend.exists(input_key(digest)) == bool(referenced), (round_, referenced)


def test_a_purge_waits_for_a_job_being_created_with_the_digest(db_url, tmp_path):
    """The interleaving the lock exists for, forced: a job creation has found the upload
    (holding the digest's lock) but not committed; the purge removes the upload record and
    then waits at the copy's check; the job commits; the purge sees it and keeps the copy."""
    if not db_url.startswith("postgresql"):
        pytest.skip("SQLite's writers take turns: the purge cannot even start its batch")
    backend = open_backend(f"file://{tmp_path / 'files'}")
    url, digest = _upload(backend, b"\x89PNG in flight")
    with session_factory()() as creating:
        files = [f.as_json() for f in uploaded_inputs(creating, {"image_url": url})]
        assert files  # found, and the digest locked until this commits
        create_job(creating, EVF, {"prompt": "cat", "image_url": url}, input_files=files)
        with ThreadPoolExecutor(1) as pool:
            purging = pool.submit(purge, "90d", backend=backend)
            poll_until(_advisory_lock_waiters, bool, 30.0, lambda n: f"the purge never waited ({n})")
            assert not purging.done()
            creating.commit()
            report = purging.result(timeout=30)
    assert (report.rows["input_uploads"], report.input_copies) == (1, 0)
    assert backend.exists(input_key(digest))
    assert purge("90d", backend=backend).input_copies == 0  # the job still names it


def _advisory_lock_waiters() -> int:
    with transaction() as s:
        waiting = (
            select(func.count())
            .select_from(text("pg_locks"))
            .where(
                text(
                    "locktype = 'advisory' AND NOT granted AND database = (SELECT oid FROM pg_database"
                    " WHERE datname = current_database())"
                )
            )
        )
        return int(s.scalar(waiting) or 0)
