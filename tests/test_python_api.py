"""The Python API as a library, in process (falbridge.submit/get/list/cancel/wait) and over
HTTP (falbridge.Client against the live app): the same calls, the same values, the same
exceptions; each value equal, field for field, to the HTTP API's JSON for the job."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime, timedelta
from types import MappingProxyType

import httpx
import pytest

import falbridge
from falbridge.models.db import transaction
from falbridge.models.jobs import create_job
from falbridge.models.tables import Job
from tests.plugins.pipeline import API_HEADERS, TEST_API_TOKEN
from tests.webhooks.test_pipeline import _cat_uri

SOME = "fal-ai/some/model"


def _as_the_api_shows_it(pipeline, job_id: str) -> dict:
    return httpx.get(f"{pipeline.receiver_url}/api/jobs/{job_id}", headers=API_HEADERS).json()


def test_submit_then_wait_returns_the_finished_job_as_the_api_shows_it(api, pipeline):
    job = api.submit("fal-ai/evf-sam", {"prompt": "cat", "image_url": _cat_uri()}, metadata={"order": 7})
    assert isinstance(job, falbridge.Job) and job.status == "pending" and job.metadata == {"order": 7}
    done = api.wait(job.id, timeout=30)
    assert done.status == "completed" and done.files[0].path == "image"
    assert done.to_json() == _as_the_api_shows_it(pipeline, job.id)
    assert repr(done) == f"<Job {job.id} fal-ai/evf-sam completed files=1>"


def test_wait_shows_the_queue_then_fals_logs_then_the_outcome(api, pipeline):
    """Like fal's subscribe with logs: the queue position while queued, each log line once
    while running; what the watch learnt (running) is in the job's history."""
    pipeline.sandbox.set_config(concurrency=1, latency_s=1.0)
    ahead = [api.submit(SOME, {"n": n}) for n in range(2)]  # in fal's one-job-at-a-time queue
    for earlier in ahead:  # at fal before it is sent: a batch's jobs go out concurrently
        pipeline.wait_status(earlier.id, "submitted", "in_progress")
    job = api.submit(SOME, {"n": 2})
    seen: list[falbridge.LiveStatus] = []
    done = api.wait(job.id, timeout=30, on_progress=seen.append)
    assert done.status == "completed"
    queued = [live.queue_position for live in seen if live.fal_status == "IN_QUEUE"]
    assert queued and queued == sorted(queued, reverse=True)  # 0: next to run
    lines = [line.message for live in seen for line in live.new_logs]
    assert lines[:2] == [f"Starting {SOME}", "Model loaded from cache"] and len(lines) == len(set(lines))
    assert [live.job.status for live in seen][-1] == "completed"
    assert ("in_progress", "poll") in [(e.to_status, e.source) for e in done.events]


def test_live_asks_fal_only_while_the_job_is_at_fal(api, pipeline):
    with transaction() as s:  # never submitted: nothing to ask fal
        pending, _ = create_job(s, SOME, {"n": 1})
    live = api.live(str(pending.id))
    assert (live.fal_status, live.logs, live.job.status) == (None, (), "pending")
    done = api.wait(api.submit(SOME, {"n": 2}).id, timeout=30)
    finished = api.live(done.id[:8])
    assert finished.fal_status is None and finished.job == done
    assert finished.to_json() == {**_as_the_api_shows_it(pipeline, done.id), "fal": finished.to_json()["fal"]}


def test_values_are_immutable(api):
    job = api.submit(SOME, {"nested": {"list": [1, 2]}}, metadata={"k": "v"})
    with pytest.raises(dataclasses.FrozenInstanceError):
        job.status = "completed"  # type: ignore[misc]
    assert isinstance(job.input, MappingProxyType) and job.input["nested"]["list"] == (1, 2)
    with pytest.raises(TypeError):
        job.metadata["k"] = "changed"  # type: ignore[index]


def test_list_pages_through_summaries(api):
    ids = [api.submit(SOME, {"n": n}).id for n in range(3)]
    first = api.list(limit=2, endpoint_id=SOME)
    second = api.list(limit=2, endpoint_id=SOME, cursor=first.next_cursor)
    listed = [j.id for j in (*first.jobs, *second.jobs)]
    assert listed == ids[::-1] and second.next_cursor is None
    assert all(isinstance(j, falbridge.JobSummary) and not isinstance(j, falbridge.Job) for j in first.jobs)


def test_an_unknown_job_is_job_not_found_everywhere(api):
    missing = str(uuid.uuid4())
    for call in (api.get, api.cancel, api.wait, api.live):
        with pytest.raises(falbridge.JobNotFound) as caught:
            call(missing)
        assert caught.value.job_id == missing


def test_a_unique_id_prefix_finds_its_job(api):
    job = api.submit(SOME, {"n": 1})
    assert api.get(job.id[:8]).id == job.id


def test_an_ambiguous_prefix_says_so(api):
    with transaction() as s:  # two ids sharing their first 8 hex digits
        for tail in ("0" * 24, "f" * 24):
            s.add(Job(id=uuid.UUID("abcdef01" + tail), endpoint_id=SOME, input={}, status="pending"))
    with pytest.raises(falbridge.AmbiguousJobId):
        api.get("abcdef01")
    assert api.get("abcdef0100").id == "abcdef01-0000-0000-0000-000000000000"


def test_invalid_input_is_invalid_input_with_its_fields(api):
    with pytest.raises(falbridge.InvalidInput) as caught:
        api.submit("fal-ai/evf-sam", {"prompt": "cat"})
    assert caught.value.errors == [{"field": "image_url", "message": "field required"}]
    with pytest.raises(falbridge.InvalidInput):
        api.submit("https://fal.run/fal-ai/evf-sam", {})


def test_an_input_that_is_not_a_mapping_is_invalid_input_naming_it(api):
    with pytest.raises(falbridge.InvalidInput, match="input"):
        api.submit(SOME, "a cat")  # type: ignore[arg-type]
    assert api.list().jobs == ()


def test_an_external_id_conflict_names_the_job(api):
    first = api.submit(SOME, {"n": 1}, external_id="order-9")
    assert api.submit(SOME, {"n": 1}, external_id="order-9").id == first.id
    with pytest.raises(falbridge.ExternalIdConflict) as caught:
        api.submit(SOME, {"n": 2}, external_id="order-9")
    assert caught.value.job_id == first.id


def test_cancel_returns_the_job_and_a_finished_one_says_so(api):
    with transaction() as s:  # a job whose submit was never enqueued: cancelled at once
        job, _ = create_job(s, SOME, {"n": 1})
    cancelled = api.cancel(str(job.id))
    assert cancelled.status == "cancelled" and cancelled.error == "cancelled before it was submitted"
    with pytest.raises(falbridge.JobAlreadyFinished) as caught:
        api.cancel(str(job.id))
    assert caught.value.job.status == "cancelled"


def test_wait_gives_up_with_the_job_as_last_seen(api):
    with transaction() as s:
        job, _ = create_job(s, SOME, {"n": 1})
        # Waiting for a retry an hour away: no submit drain the worker runs meanwhile (one
        # an earlier test asked for, on a countdown) takes it.
        job.submit_retry_at = datetime.now(UTC) + timedelta(hours=1)
    with pytest.raises(falbridge.WaitTimeout) as caught:
        api.wait(str(job.id), timeout=0.3)
    assert caught.value.job.status == "pending"


def test_the_client_never_shows_its_token():
    client = falbridge.Client("http://127.0.0.1:9", TEST_API_TOKEN)
    assert TEST_API_TOKEN not in repr(client)
    client.close()
