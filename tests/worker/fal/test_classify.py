"""Classification of responses the sandbox cannot produce, and parsing of submit answers.

These feed hand-built ``httpx.Response`` values to pure functions; no transport is
involved. Everything the sandbox can produce is tested over HTTP in test_client*.py.
"""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest

from falbridge.worker.fal import (
    FinalError,
    ModelError,
    OutcomeUnknownError,
    ResultNotReadyError,
    RetryableError,
)
from falbridge.worker.fal.classify import (
    error_from_response,
    error_from_transport,
    is_not_ready_result,
    parse_retry_after,
)
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


def test_a_result_call_answered_425_is_not_ready_yet():
    error = classify("result", 425, json_body={"detail": "Request is still in progress"})
    assert type(error) is ResultNotReadyError and error.status_code == 425


def test_only_400_409_and_425_with_a_not_ready_detail_mean_not_ready():
    for detail in ("Request is still in progress", "Request is in queue", "Result not ready"):
        answered = [
            status
            for status in range(200, 600)
            if is_not_ready_result(httpx.Response(status, json={"detail": detail}))
        ]
        assert answered == [400, 409, 425], detail
    assert not is_not_ready_result(httpx.Response(425, json={"detail": "Invalid image"}))
    assert not is_not_ready_result(httpx.Response(425, text="still in progress"))


def test_only_a_202_carries_a_pending_status_object():
    pending = [
        status
        for status in range(200, 600)
        if is_not_ready_result(httpx.Response(status, json={"status": "IN_QUEUE", "request_id": "r"}))
    ]
    assert pending == [202]


@pytest.mark.parametrize("status", [401, 403])
def test_auth_failures_are_final_not_model_errors(status):
    assert type(classify("result", status, json_body={"detail": "Unauthorized"})) is FinalError


@pytest.mark.parametrize("status", [408, 429])
def test_a_timeout_or_rate_limit_on_result_is_retryable_whatever_the_body(status):
    error = classify(
        "result", status, json_body={"detail": "Too many requests"}, headers={"Retry-After": "2"}
    )
    assert type(error) is RetryableError and error.retry_after == 2.0


@pytest.mark.parametrize("status", [400, 422, 500])
def test_a_text_detail_on_result_is_the_models_own_error(status):
    error = classify("result", status, json_body={"detail": "Image too large"})
    assert type(error) is ModelError and error.detail == "Image too large"


def test_an_error_type_header_on_result_makes_it_the_models_error_even_without_json():
    error = classify("result", 500, text="boom", headers={"X-Fal-Error-Type": "runner_server_error"})
    assert type(error) is ModelError and error.error_type == "runner_server_error"


@pytest.mark.parametrize(
    "body",
    [{"text": "<html>oops</html>"}, {"json_body": {"message": "no detail"}}, {"json_body": ["a", "list"]}],
)
def test_a_result_error_without_fals_fields_is_final_not_a_model_error(body):
    assert type(classify("result", 500, **body)) is FinalError


@pytest.mark.parametrize("operation", ["status", "cancel"])
def test_only_the_result_call_reads_a_failed_job_out_of_the_body(operation):
    body = {"detail": [{"loc": ["body"], "msg": "no", "type": "x"}]}
    assert type(classify(operation, 500, json_body=body)) is FinalError
    assert type(classify(operation, 502, json_body=body)) is RetryableError


@pytest.mark.parametrize(
    "status, expected",
    [
        (500, OutcomeUnknownError),
        (501, OutcomeUnknownError),
        (499, FinalError),
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


def test_the_request_id_is_the_callers_or_else_fals_header():
    response = httpx.Response(500, text="x", headers={"x-fal-request-id": "from-fal"})
    assert error_from_response(response, operation="status", target="t").request_id == "from-fal"
    assert (
        error_from_response(response, operation="status", target="t", request_id="ours").request_id == "ours"
    )


def test_the_message_summarises_fals_first_three_details_but_never_a_proxy_page():
    detail = [{"loc": ["body", f"f{i}"], "msg": "bad"} for i in range(4)]
    error = classify("submit", 422, json_body={"detail": detail})
    assert str(error) == "fal submit r-1: HTTP 422: body.f0: bad; body.f1: bad; body.f2: bad"
    assert error.detail == detail
    assert str(classify("status", 500, json_body={"detail": ""})) == "fal status r-1: HTTP 500"
    page = "<html>" + "x" * 400 + "</html>"
    proxy = classify("status", 500, text=f"  {page}  ")
    assert str(proxy) == "fal status r-1: HTTP 500" and proxy.detail == page[:300]
    assert classify("status", 500, text="  ").detail is None


def test_a_body_in_an_unknown_charset_is_still_read():
    response = httpx.Response(500, content=b"boom \xff", headers={"content-type": "text/plain; charset=nope"})
    error = error_from_response(response, operation="status", target="r-1")
    assert type(error) is FinalError and error.detail.startswith("boom ")


def test_a_body_its_declared_charset_cannot_decode_is_a_final_error_without_detail():
    # httpx falls back from an unknown charset, but a known one can still fail on the bytes:
    # UTF-32 without a byte-order mark raises UnicodeError (not a UnicodeDecodeError).
    response = httpx.Response(500, content=b"boom", headers={"content-type": "text/plain; charset=utf-32"})
    error = error_from_response(response, operation="status", target="r-1")
    assert type(error) is FinalError and error.detail is None


def test_a_cancel_answer_without_detail_keeps_its_status_as_the_detail():
    assert classify("cancel", 409, json_body={"status": "NOT_CANCELLABLE"}).detail == "NOT_CANCELLABLE"
    assert classify("cancel", 409, json_body={"status": "IN_PROGRESS", "detail": "why"}).detail == "why"
    assert classify("cancel", 409, json_body={"status": 3}).detail is None


NOW = datetime(2015, 10, 21, 7, 28, tzinfo=UTC)


@pytest.mark.parametrize(
    "value, seconds",
    [
        ("7", 7.0),
        (" 0.25 ", 0.25),
        ("-5", 0.0),
        ("Wed, 21 Oct 2015 07:28:30 GMT", 30.0),
        ("Wed, 21 Oct 2015 09:28:30 +0200", 30.0),
        ("Wed, 21 Oct 2015 07:28:30 -0000", 30.0),  # no zone: read as UTC
        ("Wed, 21 Oct 2015 07:27:00 GMT", 0.0),  # already past
        (None, None),
        ("", None),
        ("  ", None),
        ("soon", None),
        ("nan", None),
        ("inf", None),
        ("Wed, 32 Oct 2015 07:28:00 GMT", None),
        ("Wed, 21 Oct 2015 07:28:00 +99999999999999999999", None),  # overflows a datetime
    ],
)
def test_retry_after_in_seconds_or_as_a_date(value, seconds):
    assert parse_retry_after(value, now=NOW) == seconds


def test_a_retry_after_date_is_measured_from_the_present_by_default():
    assert 0 < parse_retry_after("Fri, 01 Jan 2100 00:00:00 GMT") < 100 * 365 * 24 * 3600


def test_what_follows_the_response_or_exception_is_passed_by_name():
    # operation and target are both strings: passed by position they could be swapped.
    with pytest.raises(TypeError):
        error_from_response(httpx.Response(500), "status", "r-1")  # type: ignore[misc]
    with pytest.raises(TypeError):
        error_from_transport(httpx.ConnectError("refused"), "submit", "r-1")  # type: ignore[misc]
    with pytest.raises(TypeError):
        parse_retry_after("7", NOW)  # type: ignore[misc]


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
