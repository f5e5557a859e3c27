"""One status poll of a job whose callback is overdue (falbridge.worker.poll), straight
against the database and the sandbox: what is not polled, and what each status makes of
the job polled and of the others."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from falbridge.models.db import transaction
from falbridge.models.jobs import create_job
from falbridge.models.tables import Job
from falbridge.worker.fal import FinalError, close_client
from falbridge.worker.poll import PollOutcome, poll
from tests.plugins.sandbox import TEST_FAL_KEY, SandboxHandle
from tests.plugins.waiting import poll_until

MODEL = "fal-ai/evf-sam"


def _fal_at(fal: Any, url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """fal's queue at `url` for this test, the client made anew on each side of it."""
    monkeypatch.setenv("FAL_KEY", TEST_FAL_KEY)
    monkeypatch.setenv("FAL_QUEUE_URL", url)
    close_client()
    yield fal
    close_client()


@pytest.fixture
def fal_queue(db_url, sandbox, monkeypatch) -> Iterator[SandboxHandle]:
    """poll() with this test's database and the sandbox as fal's queue."""
    yield from _fal_at(sandbox, sandbox.url, monkeypatch)
    # The next test's sandbox starts with no job still running: jobs still queued are dropped
    # at once, those in progress run out their latency.
    sandbox.reset()
    sandbox.wait_idle(timeout=15)


def _job(status: str = "submitted", answer: dict[str, Any] | None = None) -> uuid.UUID:
    """A job as the submit step leaves it, addressed by fal's `answer` to its submit."""
    with transaction() as s:
        job, _ = create_job(s, MODEL, {"prompt": "cat"})
        job.status = status
        if answer is not None:
            job.request_id = answer["request_id"]
            job.status_url, job.response_url = answer["status_url"], answer["response_url"]
            job.cancel_url = answer["cancel_url"]
        return job.id


def _submitted(sandbox: SandboxHandle) -> dict[str, Any]:
    with sandbox.client() as http:
        answer = http.post(f"{sandbox.url}/{MODEL}", json={"prompt": "cat"})
    answer.raise_for_status()
    body: dict[str, Any] = answer.json()
    return body


def _fal_status(sandbox: SandboxHandle, job_id: uuid.UUID) -> str:
    with transaction() as s:
        job = s.get(Job, job_id)
        assert job is not None and job.status_url is not None
        url = job.status_url
    with sandbox.client() as http:
        status: str = http.get(url).json()["status"]
    return status


def _row(job_id: uuid.UUID) -> tuple[str, int]:
    with transaction() as s:
        job = s.get(Job, job_id)
        assert job is not None
        return job.status, job.poll_attempts


def test_what_cannot_be_polled_is_left_alone(fal_queue):
    never_accepted = _job()
    finished = _job("completed", _submitted(fal_queue))
    assert poll("not-a-job-id") is PollOutcome.NOTHING_TO_POLL
    assert poll(uuid.uuid4()) is PollOutcome.NOTHING_TO_POLL
    assert poll(never_accepted) is PollOutcome.NOTHING_TO_POLL
    assert poll(finished) is PollOutcome.NOTHING_TO_POLL
    assert (_row(never_accepted), _row(finished)) == (("submitted", 0), ("completed", 0))


@pytest.mark.parametrize(
    ("setting", "outcome", "status"),
    [
        ({"queue_latency_s": 5.0}, PollOutcome.IN_QUEUE, "submitted"),
        ({"latency_s": 2.0}, PollOutcome.IN_PROGRESS, "in_progress"),
    ],
    ids=["in-queue", "in-progress"],
)
def test_a_poll_records_what_fal_says_on_the_job_polled_only(fal_queue, setting, outcome, status):
    fal_queue.set_config(**setting)
    polled, other = sorted([_job("submitted", _submitted(fal_queue)) for _ in range(2)])
    # Started at once (no queue latency), but by the sandbox's worker thread: waited for.
    poll_until(lambda: _fal_status(fal_queue, polled), lambda said: said == outcome.name)
    assert poll(polled) is outcome
    assert _row(polled) == (status, 1)
    assert _row(other) == ("submitted", 0)  # sorted after the one polled: `>=` would take it


@pytest.fixture
def scripted_fal(db_url, webhook_sink, monkeypatch) -> Iterator[Any]:
    """fal as a scripted HTTP server: a status body or an error code no sandbox knob gives."""
    yield from _fal_at(webhook_sink, webhook_sink.base_url, monkeypatch)


_PATHS = {"response_url": "/result", "cancel_url": "/cancel"}


def _job_at(fal: Any, status_path: str) -> uuid.UUID:
    urls = {name: fal.base_url + path for name, path in _PATHS.items()}
    return _job("submitted", {"request_id": "req-scripted", **urls, "status_url": fal.base_url + status_path})


# One sorting before each status poll() knows and one after: no comparison but `==` passes.
@pytest.mark.parametrize("said", ["CANCELLED", "PAUSED"])
def test_a_status_fal_added_since_is_unknown_and_changes_nothing(scripted_fal, said):
    body = json.dumps({"status": said}).encode()
    scripted_fal.serve_file("/status?logs=0", body, "application/json")
    job = _job_at(scripted_fal, "/status")
    assert poll(job) is PollOutcome.UNKNOWN_STATUS
    assert _row(job) == ("submitted", 1)


@pytest.mark.parametrize("code", [403, 410])
def test_a_final_error_other_than_404_is_raised_not_taken_for_a_forgotten_job(scripted_fal, code):
    """Only a 404 means fal forgot the request (its result gone); any other refusal is
    raised, the job left as it was."""
    scripted_fal.respond_with(code)
    job = _job_at(scripted_fal, "/refused")
    with pytest.raises(FinalError) as raised:
        poll(job)
    assert raised.value.status_code == code
    assert _row(job) == ("submitted", 1)
