"""Classification of responses the sandbox cannot produce, and parsing of submit answers.

These feed hand-built ``httpx.Response`` values to pure functions; no transport is
involved. Everything the sandbox can produce is tested over HTTP in test_client*.py.
"""

from __future__ import annotations

import httpx
import pytest

from falbridge.worker.fal import (
    FinalError,
    ModelError,
    OutcomeUnknownError,
    ResultNotReadyError,
    RetryableError,
)
from falbridge.worker.fal.classify import error_from_response, is_not_ready_result
from falbridge.worker.fal.wire import parse_submission


def classify(operation, status, *, json_body=None, text=None, headers=None):
    if json_body is not None:
        response = httpx.Response(status, json=json_body, headers=headers)
    else:
        response = httpx.Response(status, text=text or "", headers=headers)
    return error_from_response(response, operation=operation, target="r-1")


@pytest.mark.parametrize("status", [502, 503, 504])
def test_bare_gateway_errors_on_result_are_retryable(status):
    error = classify("result", status, text="<html>nginx</html>", headers={"Retry-After": "3"})
    assert type(error) is RetryableError and error.retry_after == 3.0


def test_gateway_status_with_fal_request_error_fields_is_the_jobs_outcome():
    body = {"detail": "Runner scheduling failed", "error_type": "runner_scheduling_failure"}
    error = classify("result", 503, json_body=body)
    assert type(error) is ModelError and error.error_type == "runner_scheduling_failure"
    from_header = classify("result", 504, text="timeout", headers={"X-Fal-Error-Type": "request_timeout"})
    assert type(from_header) is ModelError and from_header.error_type == "request_timeout"


@pytest.mark.parametrize("status", [400, 404, 409, 422, 500])
def test_model_shaped_bodies_on_result_are_model_errors(status):
    error = classify("result", status, json_body={"detail": [{"loc": ["body"], "msg": "no", "type": "x"}]})
    assert type(error) is ModelError and error.status_code == status


def test_unknown_request_on_result_is_final_not_a_model_error():
    error = classify("result", 404, json_body={"detail": "Request not found"})
    assert type(error) is FinalError


def test_not_ready_result_is_retryable():
    assert (
        type(classify("result", 400, json_body={"detail": "Request is still in progress"}))
        is ResultNotReadyError
    )


@pytest.mark.parametrize("status", [401, 403])
def test_auth_failures_are_final_not_model_errors(status):
    assert type(classify("result", status, json_body={"detail": "Unauthorized"})) is FinalError


@pytest.mark.parametrize(
    "status, expected",
    [
        (500, OutcomeUnknownError),
        (501, OutcomeUnknownError),
        (408, RetryableError),
        (409, FinalError),
        (400, FinalError),
    ],
)
def test_submit_status_table(status, expected):
    assert type(classify("submit", status, json_body={"detail": "x"})) is expected


@pytest.mark.parametrize("operation", ["status", "cancel"])
@pytest.mark.parametrize(
    "status, expected",
    [
        (500, FinalError),
        (502, RetryableError),
        (503, RetryableError),
        (504, RetryableError),
        (429, RetryableError),
        (404, FinalError),
    ],
)
def test_idempotent_status_table(operation, status, expected):
    assert type(classify(operation, status, text="x")) is expected


def test_error_type_header_is_used_when_the_body_has_none():
    error = classify(
        "status", 500, json_body={"detail": "boom"}, headers={"X-Fal-Error-Type": "internal_error"}
    )
    assert error.error_type == "internal_error" and error.detail == "boom"


def test_a_pending_202_on_result_counts_as_not_ready():
    assert is_not_ready_result(httpx.Response(202, json={"status": "IN_PROGRESS", "request_id": "r"}))
    assert not is_not_ready_result(httpx.Response(202, json={"image": {"url": "u"}}))
    assert not is_not_ready_result(httpx.Response(400, json={"detail": [{"msg": "in progress"}]}))


# --- reading a submit answer (fal's shape varies between doc generations) ----------------


def test_submit_answer_without_urls_gets_the_fallback_ones():
    response = httpx.Response(202, json={"request_id": "r-9", "status": "IN_QUEUE", "extra": 1})
    submission = parse_submission("https://q.example", "fal-ai/florence-2-large/region-proposal", response)
    assert submission.status_url == "https://q.example/fal-ai/florence-2-large/requests/r-9/status"
    assert submission.response_url == "https://q.example/fal-ai/florence-2-large/requests/r-9"
    assert submission.cancel_url == "https://q.example/fal-ai/florence-2-large/requests/r-9/cancel"
    assert submission.queue_position is None and submission.gateway_request_id == "r-9"


def test_submit_answer_keeps_a_distinct_gateway_id_and_given_urls():
    body = {
        "request_id": "r-1",
        "gateway_request_id": "g-2",
        "queue_position": 3,
        "status_url": "https://q/x/status",
        "response_url": "https://q/x/response",
        "cancel_url": None,
    }
    submission = parse_submission("https://q", "fal-ai/evf-sam", httpx.Response(200, json=body))
    assert (submission.gateway_request_id, submission.queue_position) == ("g-2", 3)
    assert submission.response_url == "https://q/x/response"
    assert submission.cancel_url == "https://q/fal-ai/evf-sam/requests/r-1/cancel"


def test_submit_answer_with_only_the_request_id_header_is_usable():
    response = httpx.Response(200, text="", headers={"x-fal-request-id": "r-h"})
    assert parse_submission("https://q", "fal-ai/evf-sam", response).request_id == "r-h"


def test_submit_answer_without_any_request_id_is_outcome_unknown():
    with pytest.raises(OutcomeUnknownError):
        parse_submission("https://q", "fal-ai/evf-sam", httpx.Response(200, json={"status": "IN_QUEUE"}))
