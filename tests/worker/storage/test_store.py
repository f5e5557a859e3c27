"""The storing step (worker/storage/store.py) against real rows, the sandbox's CDN over
HTTP, and both backends (a directory; moto's S3 server in its own process)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from falbridge.config import SweepConfig
from falbridge.worker import inline
from falbridge.worker.storage import backend as backends
from falbridge.worker.storage.store import StoreOutcome, store_files
from falbridge.worker.sweep import sweep
from tests.plugins.storage import MotoServer, cdn_file, use_s3
from tests.plugins.waiting import run_at_once
from tests.worker.storage.helpers import (
    completed_job,
    count_records,
    detail,
    files_stored_events,
    png,
    records,
)

pytestmark = pytest.mark.usefixtures("db_url")


def test_a_completed_jobs_file_is_stored_with_what_it_is(sandbox, storage):
    data = png(5, 4)
    job_id = completed_job({"image": cdn_file(sandbox, data)})

    report = store_files(job_id)

    assert (report.outcome, report.stored, report.missing) == (StoreOutcome.DONE, 1, 0)
    assert (report.bytes, report.failures) == (len(data), 0)
    [row] = records(job_id)
    assert (row.status, row.sha256, row.size) == ("stored", hashlib.sha256(data).hexdigest(), len(data))
    assert row.attempts == 1  # the first attempt, unless the task says otherwise
    assert (row.served_type, row.sniffed_type, row.width, row.height) == ("image/png", "image/png", 5, 4)
    assert row.storage_key.startswith(f"jobs/{job_id}/image-") and row.storage_key.endswith("-mask.png")
    with backends.configured().open(row.storage_key) as reader:
        assert reader.read() == data
    [event] = files_stored_events(job_id)
    assert (event.from_status, event.to_status, event.detail) == (
        "completed",
        "completed",
        {"stored": 1, "missing": 0},
    )
    [shown] = detail(job_id)["files"]
    assert shown["status"] == "stored" and shown["sha256"] == row.sha256 and shown["size"] == len(data)
    assert shown["download_url"] == f"/api/jobs/{job_id}/files/{shown['id']}"
    assert shown["fal_url"] == shown["url"]
    assert detail(job_id)["status"] == "completed"


def test_a_file_fal_no_longer_has_is_recorded_missing_and_the_job_stays_completed(sandbox, storage):
    job_id = completed_job({"image": cdn_file(sandbox, png()), "extra": cdn_file(sandbox, b"kept", "a.bin")})
    sandbox.reset()  # the sandbox's CDN forgets every file

    report = store_files(job_id)

    assert (report.outcome, report.missing, report.stored) == (StoreOutcome.DONE, 2, 0)
    assert (report.failures, report.bytes) == (2, 0)
    assert {row.status for row in records(job_id)} == {"missing"}
    assert "HTTP 404" in records(job_id)[0].reason
    [event] = files_stored_events(job_id)
    assert event.detail == {"stored": 0, "missing": 2}
    shown = detail(job_id)
    assert shown["status"] == "completed"
    assert shown["files"][0]["download_url"] is None and "HTTP 404" in shown["files"][0]["missing_reason"]


def _broken_storage(storage, monkeypatch, tmp_path: Path) -> MotoServer | None:
    """FALBRIDGE_STORAGE_URL naming a backend that is down: a directory that cannot be
    made (a file is in the way), or an S3 server that has stopped."""
    if storage.kind == "local":
        blocker = tmp_path / "blocker"
        blocker.write_bytes(b"not a directory")
        monkeypatch.setenv("FALBRIDGE_STORAGE_URL", f"file://{blocker}/files")
        return None
    down = MotoServer().start()
    monkeypatch.setenv("FALBRIDGE_STORAGE_URL", use_s3(monkeypatch, down))
    down.stop()
    return down


def test_a_backend_that_is_down_is_retried_then_the_file_recorded_missing(
    sandbox, storage, monkeypatch, tmp_path
):
    job_id = completed_job({"image": cdn_file(sandbox, png())})
    _broken_storage(storage, monkeypatch, tmp_path)

    first = store_files(job_id, attempt=1)
    assert first.outcome is StoreOutcome.RETRY and "storage backend unavailable" in first.retry_reasons[0]
    assert (first.failures, first.missing, first.stored) == (1, 0, 0)
    assert count_records(job_id) == 0 and files_stored_events(job_id) == []

    last = store_files(job_id, attempt=3, final=True)

    assert (last.outcome, last.missing, last.stored, last.failures) == (StoreOutcome.DONE, 1, 0, 1)
    [row] = records(job_id)
    assert (row.status, row.attempts) == ("missing", 3)
    assert row.reason.startswith("storage backend unavailable") and row.reason.endswith("(after 3 attempts)")
    assert len(files_stored_events(job_id)) == 1
    assert detail(job_id)["status"] == "completed"


def test_a_result_with_200_files_is_stored_whole_with_one_event(sandbox, storage):
    output = {"images": [cdn_file(sandbox, png(i + 1, 1), f"m{i}.png") for i in range(200)]}
    job_id = completed_job(output)

    report = store_files(job_id)

    assert (report.stored, report.missing) == (200, 0)
    rows = records(job_id)
    assert len(rows) == 200 and {r.status for r in rows} == {"stored"}
    assert sorted(r.width for r in rows) == list(range(1, 201))
    assert len(files_stored_events(job_id)) == 1
    assert store_files(job_id).outcome is StoreOutcome.NOTHING_TO_STORE  # nothing left


def test_two_concurrent_store_tasks_leave_one_record_per_file_and_one_event(sandbox, storage):
    output = {"images": [cdn_file(sandbox, png(2, 2), f"m{i}.png") for i in range(8)]}
    job_id = completed_job(output)
    reports = run_at_once(lambda: store_files(job_id))

    assert sum(r.stored for r in reports) == 8
    assert count_records(job_id) == 8 and len(files_stored_events(job_id)) == 1
    backend = backends.configured()
    for row in records(job_id):
        assert backend.exists(row.storage_key)
    if storage.kind == "local":  # the loser's duplicates were deleted: one object per file
        root = Path(storage.url.removeprefix("file://"))
        assert len(list((root / "jobs" / str(job_id)).iterdir())) == 8


def test_storing_none_or_other_endpoints_leaves_the_files_alone(sandbox, storage, monkeypatch):
    job_id = completed_job({"image": cdn_file(sandbox, png())}, endpoint_id="fal-ai/evf-sam")
    monkeypatch.setenv("FALBRIDGE_STORE_FILES", "none")
    assert store_files(job_id).outcome is StoreOutcome.NOT_CONFIGURED
    monkeypatch.setenv("FALBRIDGE_STORE_FILES", "fal-ai/flux/dev, fal-ai/other")
    assert store_files(job_id).outcome is StoreOutcome.NOT_CONFIGURED
    monkeypatch.setenv("FALBRIDGE_STORE_FILES", "fal-ai/flux/dev,fal-ai/evf-sam")
    assert store_files(job_id).outcome is StoreOutcome.DONE
    assert detail(job_id)["files"][0]["status"] == "stored"


def test_a_file_over_the_size_limit_is_recorded_missing_at_once(sandbox, storage, monkeypatch):
    monkeypatch.setenv("FALBRIDGE_STORE_MAX_BYTES", "1000")
    job_id = completed_job({"image": cdn_file(sandbox, b"x" * 1001, "big.bin")})

    assert store_files(job_id).missing == 1
    [row] = records(job_id)
    assert row.status == "missing" and "1000-byte limit" in row.reason


def test_a_job_not_completed_has_nothing_to_store(storage):
    assert store_files("not-a-uuid").outcome is StoreOutcome.NOTHING_TO_STORE
    assert store_files("00000000-0000-0000-0000-000000000000").outcome is StoreOutcome.NOTHING_TO_STORE


SWEEP_STORES = SweepConfig(
    pending_grace_s=3600,
    delivery_grace_s=3600,
    silent_after_s=3600,
    poll_every_s=3600,
    outcome_unknown_grace_s=3600,
)


def test_the_sweeper_stores_what_no_task_did_once_its_grace_is_over(sandbox, storage, monkeypatch):
    job_id = completed_job({"image": cdn_file(sandbox, png())})  # no dispatcher: no task
    other = completed_job({"image": cdn_file(sandbox, png())}, endpoint_id="fal-ai/other")
    assert sweep(inline.run, SWEEP_STORES).files_to_store == 0  # within FALBRIDGE_STORE_GRACE_S
    monkeypatch.setenv("FALBRIDGE_STORE_FILES", "fal-ai/evf-sam")
    monkeypatch.setenv("FALBRIDGE_STORE_GRACE_S", "0")

    report = sweep(inline.run, SWEEP_STORES)

    assert report.files_to_store == 1 and report.errors == []
    assert [r.status for r in records(job_id)] == ["stored"] and records(other) == []
    assert sweep(inline.run, SWEEP_STORES).files_to_store == 0  # recorded: nothing left
    monkeypatch.setenv("FALBRIDGE_STORE_FILES", "none")
    assert sweep(inline.run, SWEEP_STORES).files_to_store == 0
