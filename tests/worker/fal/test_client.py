"""QueueClient against the sandbox over real HTTP: submit, status, result, cancel.

Error classes are in test_client_errors.py, secret hygiene and the per-process
client in test_client_hygiene.py.
"""

from __future__ import annotations

import json
import uuid

import pytest

from falbridge.worker.fal import (
    EVF_SAM,
    REGION_PROPOSAL,
    CancelOutcome,
    EvfSamOutput,
    FinalError,
    InputValidationError,
    ModelError,
    RegionProposalOutput,
    RequestRef,
    ResultNotReadyError,
    RetryableError,
    SubmitOptions,
)
from tests.worker.fal.test_support import EVF_INPUT, IMAGE, PASS_THROUGH, only_request

# --- submit, status, result: the happy paths --------------------------------------------


def test_evf_sam_round_trip(queue_client, sandbox):
    submission = queue_client.submit(EVF_SAM, EVF_INPUT)
    assert submission.endpoint_id == EVF_SAM
    assert submission.gateway_request_id == submission.request_id
    assert submission.status_url == f"{sandbox.url}/fal-ai/evf-sam/requests/{submission.request_id}/status"
    assert submission.queue_position == 0
    sandbox.wait_idle()

    status = queue_client.status(submission, with_logs=True)
    assert (status.status, status.http_status) == ("COMPLETED", 200)
    assert status.request_id == submission.request_id
    assert status.logs and all("message" in entry for entry in status.logs)
    assert "inference_time" in status.metrics
    assert not status.is_failed and status.error is None and status.error_type is None

    output = EvfSamOutput.model_validate(queue_client.result(submission))
    assert output.image.url.startswith(sandbox.url)
    assert only_request(sandbox)["input"] == EVF_INPUT  # only the fields we set were sent


def test_status_without_logs_reports_them_as_absent(queue_client, sandbox):
    submission = queue_client.submit(EVF_SAM, EVF_INPUT)
    sandbox.wait_idle()
    assert queue_client.status(submission).logs is None


def test_region_proposal_status_urls_drop_the_endpoint_path_and_are_reused(queue_client, sandbox):
    submission = queue_client.submit(REGION_PROPOSAL, {"image_url": IMAGE})
    for url in (submission.status_url, submission.response_url, submission.cancel_url):
        assert url.startswith(f"{sandbox.url}/fal-ai/florence-2-large/requests/")
        assert "region-proposal" not in url
    sandbox.wait_idle()
    assert queue_client.status(submission).status == "COMPLETED"
    output = RegionProposalOutput.model_validate(queue_client.result(submission))
    assert output.results.bboxes


def test_stored_urls_are_used_verbatim_not_rebuilt(queue_client, sandbox):
    submission = queue_client.submit(REGION_PROPOSAL, {"image_url": IMAGE})
    sandbox.wait_idle()
    full_path = f"{sandbox.url}/{REGION_PROPOSAL}/requests/{submission.request_id}"
    stored = RequestRef(
        REGION_PROPOSAL, submission.request_id, f"{full_path}/status", full_path, f"{full_path}/cancel"
    )
    # The sandbox, like fal's docs, refuses the full-path form by default: a 404 proves
    # the client sent the stored URL instead of quietly rebuilding the owner/app one.
    with pytest.raises(FinalError) as caught:
        queue_client.status(stored)
    assert caught.value.status_code == 404
    sandbox.set_config(accept_full_path_urls=True)
    assert queue_client.status(stored).status == "COMPLETED"
    assert "results" in queue_client.result(stored)


def test_the_newer_response_url_shape_is_followed_as_given(queue_client, sandbox):
    submission = queue_client.submit(EVF_SAM, EVF_INPUT)
    sandbox.wait_idle()
    ref = RequestRef(EVF_SAM, submission.request_id, response_url=f"{submission.response_url}/response")
    assert "image" in queue_client.result(ref)


def test_missing_stored_urls_fall_back_to_the_owner_app_form(queue_client, sandbox):
    submission = queue_client.submit(REGION_PROPOSAL, {"image_url": IMAGE})
    sandbox.wait_idle()
    bare = RequestRef(REGION_PROPOSAL, submission.request_id)
    assert queue_client.status(bare).status == "COMPLETED"
    assert "results" in queue_client.result(bare)
    assert queue_client.cancel(bare) is CancelOutcome.ALREADY_COMPLETED


def test_stored_urls_on_another_origin_never_receive_the_key(queue_client, sandbox, webhook_sink):
    elsewhere = RequestRef(EVF_SAM, "r-1", status_url=f"{webhook_sink.base_url}/steal")
    with pytest.raises(FinalError, match="refusing to send the fal key"):
        queue_client.status(elsewhere)
    assert webhook_sink.received == []


def test_pass_through_endpoint_is_sent_unvalidated_and_echoed(queue_client, sandbox):
    data = {"prompt": "a fox", "num_images": 2, "nested": {"seed": None}}
    submission = queue_client.submit(PASS_THROUGH, data)
    assert "/fal-ai/flux/requests/" in submission.status_url
    sandbox.wait_idle()
    assert queue_client.result(submission)["echo"] == data


def test_invalid_input_fails_before_anything_is_sent(queue_client, sandbox):
    with pytest.raises(InputValidationError, match="blur_mask: must be odd"):
        queue_client.submit(EVF_SAM, {**EVF_INPUT, "blur_mask": 4})
    with pytest.raises(ValueError, match="endpoint id"):
        queue_client.submit("fal-ai/../evf-sam", EVF_INPUT)
    for webhook in (
        "/relative/hook",
        "ftp://h/x",
        "https:///path",
        "http://[::1",
        "http://a b/",
        "http://h/\n",
    ):
        with pytest.raises(ValueError, match="webhook_url"):
            queue_client.submit(EVF_SAM, EVF_INPUT, webhook_url=webhook)
    assert sandbox.ground_truth() == {"requests": [], "rejected_submits": []}


def test_optional_headers_and_webhook_arrive_intact(queue_client, sandbox, webhook_sink):
    webhook = f"{webhook_sink.url}?job=42&token=a%2Fb%3D%3D&next=https%3A%2F%2Fx.example%2F%3Fq%3D1"
    options = SubmitOptions(
        request_timeout=30,
        object_lifecycle=3600,
        priority="low",
        store_io=False,
        max_queue_length=5,
        runner_hint="session-7",
    )
    submission = queue_client.submit(EVF_SAM, EVF_INPUT, webhook_url=webhook, options=options)
    truth = sandbox.request(submission.request_id)
    assert truth["webhook_url"] == webhook
    assert truth["query_seen"] == {"fal_webhook": webhook, "fal_max_queue_length": "5"}
    assert truth["priority"] == "low"
    seen = truth["headers_seen"]
    assert seen["x-fal-request-timeout"] == "30"
    assert json.loads(seen["x-fal-object-lifecycle-preference"]) == {"expiration_duration_seconds": 3600}
    assert seen["x-fal-queue-priority"] == "low"
    assert seen["x-fal-store-io"] == "0"
    assert seen["x-fal-runner-hint"] == "session-7"
    delivered = webhook_sink.wait_for(1)[0]
    assert delivered.path == webhook[len(webhook_sink.base_url) :]
    assert delivered.json()["request_id"] == submission.request_id


def test_queued_request_reports_202_and_its_position(queue_client, sandbox):
    sandbox.set_config(queue_latency_s=60.0)
    first = queue_client.submit(EVF_SAM, EVF_INPUT)
    second = queue_client.submit(EVF_SAM, EVF_INPUT)
    assert second.queue_position == 1
    status = queue_client.status(second, with_logs=True)
    assert (status.status, status.http_status, status.queue_position) == ("IN_QUEUE", 202, 1)
    assert not status.is_completed
    for submission in (first, second):
        assert queue_client.cancel(submission) is CancelOutcome.REQUESTED


# --- failed jobs, unfinished and expired requests ---------------------------------------


def test_failed_job_is_a_model_error_with_fals_detail(queue_client, sandbox):
    submission = queue_client.submit(EVF_SAM, {**EVF_INPUT, "blur_mask": 4}, validate=False)
    sandbox.wait_idle()
    status = queue_client.status(submission)
    assert status.is_completed and status.is_failed
    assert "blur_mask" in status.error
    with pytest.raises(ModelError) as caught:
        queue_client.result(submission)
    error = caught.value
    assert error.status_code == 422
    assert isinstance(error.detail, list) and error.detail[0]["loc"] == ["body", "blur_mask"]
    assert error.detail_messages() == ["body.blur_mask: blur_mask must be an odd number"]
    assert error.request_id == submission.request_id


def test_runner_failure_is_a_model_error_with_its_error_type(queue_client, sandbox):
    sandbox.set_faults(error=1.0)
    submission = queue_client.submit(EVF_SAM, EVF_INPUT)
    sandbox.wait_idle()
    assert queue_client.status(submission).error_type == "runner_server_error"
    with pytest.raises(ModelError) as caught:
        queue_client.result(submission)
    assert (caught.value.status_code, caught.value.error_type) == (500, "runner_server_error")


def test_result_before_completion_is_retryable_not_a_model_error(queue_client, sandbox):
    sandbox.set_config(queue_latency_s=60.0)
    submission = queue_client.submit(EVF_SAM, EVF_INPUT)
    with pytest.raises(ResultNotReadyError) as caught:
        queue_client.result(submission)
    assert isinstance(caught.value, RetryableError) and caught.value.status_code == 400
    queue_client.cancel(submission)


def test_result_after_retention_is_final_but_not_a_model_error(queue_client, sandbox):
    sandbox.set_config(retention_s=0.0)
    submission = queue_client.submit(EVF_SAM, EVF_INPUT)
    sandbox.wait_idle()
    with pytest.raises(FinalError) as caught:
        queue_client.result(submission)
    assert not isinstance(caught.value, ModelError)
    assert caught.value.status_code == 404
    assert caught.value.detail == "Request not found"


# --- cancel -----------------------------------------------------------------------------


def test_cancelling_a_queued_request_ends_it_as_client_cancelled(queue_client, sandbox):
    sandbox.set_config(queue_latency_s=60.0)
    submission = queue_client.submit(EVF_SAM, EVF_INPUT)
    assert queue_client.cancel(submission) is CancelOutcome.REQUESTED
    sandbox.wait_idle()
    assert queue_client.status(submission).error_type == "client_cancelled"
    with pytest.raises(ModelError) as caught:
        queue_client.result(submission)
    assert caught.value.status_code == 499


def test_cancel_after_completion_and_of_unknown_requests(queue_client, sandbox):
    submission = queue_client.submit(EVF_SAM, EVF_INPUT)
    sandbox.wait_idle()
    assert queue_client.cancel(submission) is CancelOutcome.ALREADY_COMPLETED
    assert queue_client.cancel(RequestRef(EVF_SAM, str(uuid.uuid4()))) is CancelOutcome.NOT_FOUND
