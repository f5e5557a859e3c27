"""The storing step as the worker runs it: a commit's completed jobs go as one task
(store_jobs_files), and a job whose files must wait goes on by itself (store_files),
its first run counted among the FALBRIDGE_STORE_RETRIES attempts."""

from __future__ import annotations

import pytest

from falbridge.models.db import transaction
from falbridge.models.jobs import create_job, lock_job
from falbridge.models.states import EventSource
from falbridge.worker import metrics
from falbridge.worker.apply.outcome import complete
from tests.plugins.storage import cdn_file
from tests.plugins.waiting import poll_until
from tests.worker.storage.helpers import completed_job, files_stored_events, png, records
from tests.worker.storage.test_store import _broken_storage


def _failed_attempts(final: bool) -> float:
    """The worker's count of failed attempts to store a file (it runs in this process)."""
    counted = metrics.get()
    assert counted is not None
    return sum(
        sample.value
        for family in counted.storage_failures.collect()
        for sample in family.samples
        if sample.name.endswith("_total") and sample.labels["final"] == str(final).lower()
    )


@pytest.mark.parametrize("storage", ["local"], indirect=True)
def test_a_file_that_must_wait_is_retried_by_itself_and_recorded_missing_after_the_last_try(
    pipeline, storage, monkeypatch, tmp_path
):
    retried_before = _failed_attempts(final=False)
    monkeypatch.setenv("FALBRIDGE_STORE_RETRIES", "1")  # one retry after the batch's run
    _broken_storage(storage, monkeypatch, tmp_path)
    # Completing it hands the job to the worker after the commit, as the drain's does.
    job_id = completed_job({"image": cdn_file(pipeline.sandbox, png())})
    [row] = poll_until(lambda: records(job_id), bool, 20.0, lambda rows: f"no record yet: {rows}")
    assert (row.status, row.attempts) == ("missing", 2)
    assert row.reason.endswith("(after 2 attempts)")
    # Two runs in all: the batch's, then the one retry (not a retry count starting over).
    assert _failed_attempts(final=False) - retried_before == 1
    assert len(files_stored_events(job_id)) == 1


def test_the_jobs_completed_by_one_commit_are_stored_each_file_once(pipeline, storage):
    outputs = [{"image": cdn_file(pipeline.sandbox, png(2 + n))} for n in range(3)]
    with transaction() as s:
        made = [create_job(s, "fal-ai/evf-sam", {"prompt": "cat"})[0] for _ in outputs]
        for job in made:
            job.status = "in_progress"
    with transaction() as s:  # one commit completing all three, as a drain's batch does
        for job, output in zip(made, outputs, strict=True):
            locked = lock_job(s, job.id)
            assert locked is not None and complete(s, locked, output, EventSource.WEBHOOK)
    for job in made:
        [row] = poll_until(lambda job=job: records(job.id), bool, 20.0, lambda rows: "not stored yet")
        assert (row.status, row.attempts) == ("stored", 1)
        assert len(files_stored_events(job.id)) == 1
