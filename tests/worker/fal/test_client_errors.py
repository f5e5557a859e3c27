"""QueueClient error classes over real HTTP against the sandbox.

Each test would fail if the class were wrong; the submit ones also check the sandbox's
ground truth, because whether a job exists is the whole point of the distinction.
"""

from __future__ import annotations

import uuid

import httpx
import pytest

from falbridge.sandbox.server import SandboxServer
from falbridge.worker.fal import (
    EVF_SAM,
    FinalError,
    OutcomeUnknownError,
    QueueClient,
    RequestRef,
    RetryableError,
    SubmitOptions,
)
from tests.plugins.db import free_port
from tests.plugins.sandbox import TEST_FAL_KEY, sandbox_test_config
from tests.worker.fal.test_support import EVF_INPUT, only_request, short_read_timeout_client


@pytest.fixture
def locked_sandbox():
    """A second sandbox that only accepts TEST_FAL_KEY (the shared one accepts any key)."""
    with SandboxServer(sandbox_test_config(allowed_keys={TEST_FAL_KEY})) as server:
        yield server


def test_wrong_key_is_final_on_every_call(locked_sandbox):
    with QueueClient(locked_sandbox.url, "someone:else") as stranger:
        with pytest.raises(FinalError) as caught:
            stranger.submit(EVF_SAM, EVF_INPUT)
        assert type(caught.value) is FinalError and caught.value.status_code == 401
        ref = RequestRef(EVF_SAM, str(uuid.uuid4()))
        for call in (stranger.status, stranger.result):
            with pytest.raises(FinalError) as caught:
                call(ref)
            assert type(caught.value) is FinalError and caught.value.status_code == 401
    assert locked_sandbox.core.ground_truth()["requests"] == []


def test_rejected_submit_option_is_final_with_fals_detail(queue_client, sandbox):
    class OptionsFalRejects(SubmitOptions):
        def headers(self) -> dict[str, str]:
            return {"X-Fal-Queue-Priority": "urgent"}

    with pytest.raises(FinalError) as caught:
        queue_client.submit(EVF_SAM, EVF_INPUT, options=OptionsFalRejects())
    assert type(caught.value) is FinalError and caught.value.status_code == 422
    assert caught.value.detail_messages()[0].startswith("header.x-fal-queue-priority:")
    assert sandbox.ground_truth()["requests"] == []


def test_connection_refused_is_retryable_and_creates_nothing(sandbox):
    with QueueClient(f"http://127.0.0.1:{free_port()}", TEST_FAL_KEY) as nowhere:
        with pytest.raises(RetryableError) as caught:
            nowhere.submit(EVF_SAM, EVF_INPUT)
        assert isinstance(caught.value.__cause__, httpx.ConnectError)
        with pytest.raises(RetryableError) as caught:
            nowhere.status(RequestRef(EVF_SAM, "r-1"))
        assert caught.value.request_id == "r-1"
    assert sandbox.ground_truth() == {"requests": [], "rejected_submits": []}


@pytest.mark.parametrize("status_code", [502, 503, 504])
def test_gateway_error_on_submit_is_retryable_and_created_nothing(queue_client, sandbox, status_code):
    sandbox.set_faults(submit_5xx=1.0, submit_5xx_status=status_code)
    with pytest.raises(RetryableError) as caught:
        queue_client.submit(EVF_SAM, EVF_INPUT)
    assert caught.value.status_code == status_code and caught.value.retry_after is None
    truth = sandbox.ground_truth()
    assert truth["requests"] == []
    assert [r["http_status"] for r in truth["rejected_submits"]] == [status_code]


@pytest.mark.parametrize("seconds", [7, 0.25])
def test_429_on_submit_is_retryable_after_the_servers_delay(queue_client, sandbox, seconds):
    sandbox.set_faults(submit_429=1.0, retry_after_s=seconds)
    with pytest.raises(RetryableError) as caught:
        queue_client.submit(EVF_SAM, EVF_INPUT)
    assert caught.value.status_code == 429
    assert caught.value.retry_after == seconds
    assert sandbox.ground_truth()["requests"] == []


def test_lost_submit_response_is_outcome_unknown_and_the_job_exists(queue_client, sandbox):
    sandbox.set_faults(submit_response_lost=1.0)
    with pytest.raises(OutcomeUnknownError) as caught:
        queue_client.submit(EVF_SAM, EVF_INPUT)
    assert isinstance(caught.value.__cause__, (httpx.RemoteProtocolError, httpx.ReadError))
    job = only_request(sandbox)
    assert job["submit_response_lost"] is True and job["endpoint_id"] == EVF_SAM


def test_slow_submit_response_is_outcome_unknown_and_the_job_exists(sandbox):
    sandbox.set_faults(submit_delay=1.0, submit_delay_s=1.0)
    with short_read_timeout_client(sandbox) as impatient, pytest.raises(OutcomeUnknownError) as caught:
        impatient.submit(EVF_SAM, EVF_INPUT)
    assert isinstance(caught.value.__cause__, httpx.ReadTimeout)
    assert "submit_delay" in only_request(sandbox)["faults"]


def test_read_timeout_on_status_is_retryable(queue_client, sandbox):
    sandbox.set_config(queue_latency_s=60.0)
    queued = queue_client.submit(EVF_SAM, EVF_INPUT)
    # The sandbox has no slow-status knob; its idle-wait endpoint (same origin) holds the
    # answer while the queued job keeps it busy, which is a real slow response.
    slow = RequestRef(EVF_SAM, queued.request_id, status_url=f"{sandbox.url}/_sandbox/idle?timeout=5")
    with short_read_timeout_client(sandbox) as impatient, pytest.raises(RetryableError) as caught:
        impatient.status(slow)
    assert isinstance(caught.value.__cause__, httpx.ReadTimeout)
    queue_client.cancel(queued)


def test_full_queue_is_retryable_without_a_delay_hint(queue_client, sandbox):
    sandbox.set_config(queue_latency_s=60.0)
    waiting = queue_client.submit(EVF_SAM, EVF_INPUT)
    with pytest.raises(RetryableError) as caught:
        queue_client.submit(EVF_SAM, EVF_INPUT, options=SubmitOptions(max_queue_length=1))
    assert caught.value.status_code == 429 and caught.value.retry_after is None
    assert [r["request_id"] for r in sandbox.ground_truth()["requests"]] == [waiting.request_id]
    queue_client.cancel(waiting)
