"""Pure protocol pieces of the fal client: ids, URLs, options, configuration, Retry-After.

No network here; everything that talks HTTP is in test_client*.py against the sandbox.
"""

from __future__ import annotations

import json
import pickle
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from falbridge.worker.fal import (
    FalConfigError,
    FalError,
    InputValidationError,
    ModelError,
    QueueClient,
    RequestRef,
    RetryableError,
    Submission,
    SubmitOptions,
    app_id_of,
    close_client,
    detail_messages,
    fallback_queue_urls,
    get_client,
    validate_endpoint_id,
)
from falbridge.worker.fal.classify import parse_retry_after


@pytest.mark.parametrize(
    "endpoint_id, app_id",
    [
        ("fal-ai/evf-sam", "fal-ai/evf-sam"),
        ("fal-ai/florence-2-large/region-proposal", "fal-ai/florence-2-large"),
        ("fal-ai/bytedance/seedream/v4/text-to-image", "fal-ai/bytedance"),
        ("workflows/someone/my-flow", "workflows/someone/my-flow"),
        ("comfy/someone/app/extra/path", "comfy/someone/app"),
        ("fal-ai/flux-pro/v1.1-ultra", "fal-ai/flux-pro"),
    ],
)
def test_app_id_drops_the_endpoint_path_but_keeps_namespaces(endpoint_id, app_id):
    assert app_id_of(endpoint_id) == app_id


@pytest.mark.parametrize(
    "bad, fragment",
    [
        ("", "empty"),
        ("evf-sam", "owner/app"),
        ("workflows/someone", "namespace/owner/app"),
        ("fal-ai//evf-sam", "empty segment"),
        ("/fal-ai/evf-sam", "empty segment"),
        ("fal-ai/evf-sam/", "empty segment"),
        ("fal-ai/../admin", "'..'"),
        ("fal-ai/./evf-sam", "'.'"),
        ("https://queue.fal.run/fal-ai/evf-sam", "looks like a URL"),
        ("fal-ai/evf-sam?x=1", "may only contain"),
        ("fal-ai/evf sam", "may only contain"),
        ("fal-ai/evf%2Fsam", "may only contain"),
    ],
)
def test_invalid_endpoint_ids_fail_with_a_readable_message(bad, fragment):
    with pytest.raises(ValueError) as caught:
        validate_endpoint_id(bad)
    assert fragment in str(caught.value)


def test_endpoint_id_must_be_a_string():
    with pytest.raises(ValueError, match="must be a string"):
        validate_endpoint_id(None)


def test_fallback_urls_follow_the_owner_app_rule():
    urls = fallback_queue_urls("https://queue.fal.run/", "fal-ai/florence-2-large/region-proposal", "r-1")
    assert urls.status_url == "https://queue.fal.run/fal-ai/florence-2-large/requests/r-1/status"
    assert urls.response_url == "https://queue.fal.run/fal-ai/florence-2-large/requests/r-1"
    assert urls.cancel_url == "https://queue.fal.run/fal-ai/florence-2-large/requests/r-1/cancel"


@pytest.mark.parametrize("request_id", ["", " ", "..", "."])
def test_fallback_urls_refuse_ids_that_could_escape_the_path(request_id):
    with pytest.raises(ValueError):
        fallback_queue_urls("https://queue.fal.run", "fal-ai/evf-sam", request_id)


def test_fallback_urls_percent_encode_slashes_in_ids():
    urls = fallback_queue_urls("https://q", "fal-ai/evf-sam", "a/../b")
    assert urls.response_url == "https://q/fal-ai/evf-sam/requests/a%2F..%2Fb"


def test_submission_gateway_id_defaults_to_request_id_and_yields_a_ref():
    submission = Submission("fal-ai/evf-sam", "r-1", "s", "r", "c")
    assert submission.gateway_request_id == "r-1"
    assert submission.ref() == RequestRef("fal-ai/evf-sam", "r-1", "s", "r", "c")


def test_submit_options_map_to_fal_headers_and_query():
    options = SubmitOptions(
        request_timeout=30,
        object_lifecycle=3600,
        priority="low",
        store_io=False,
        max_queue_length=0,
        runner_hint="session-7",
    )
    assert options.headers() == {
        "X-Fal-Request-Timeout": "30",
        "X-Fal-Object-Lifecycle-Preference": '{"expiration_duration_seconds":3600}',
        "X-Fal-Queue-Priority": "low",
        "X-Fal-Store-IO": "0",
        "X-Fal-Runner-Hint": "session-7",
    }
    assert options.query_params() == {"fal_max_queue_length": "0"}
    assert SubmitOptions().headers() == {} and SubmitOptions().query_params() == {}


def test_submit_options_pass_a_lifecycle_dict_through_as_json():
    preference = {"expiration_duration_seconds": None, "initial_acl": {"default": "forbid"}}
    header = SubmitOptions(object_lifecycle=preference, store_io=True, request_timeout=2.5).headers()
    assert json.loads(header["X-Fal-Object-Lifecycle-Preference"]) == preference
    assert header["X-Fal-Store-IO"] == "1"
    assert header["X-Fal-Request-Timeout"] == "2.5"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"request_timeout": 1},
        {"request_timeout": 0.5},
        {"request_timeout": float("inf")},
        {"request_timeout": True},
        {"object_lifecycle": 0},
        {"object_lifecycle": "1h"},
        {"priority": "high"},
        {"store_io": 1},
        {"max_queue_length": -1},
        {"max_queue_length": 2.0},
        {"runner_hint": ""},
        {"runner_hint": "a\r\nX-Injected: 1"},
    ],
)
def test_submit_options_reject_values_fal_would_misread(kwargs):
    with pytest.raises(ValueError):
        SubmitOptions(**kwargs)


def test_retry_after_accepts_seconds_and_http_dates():
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after(format_datetime(now + timedelta(seconds=30), usegmt=True), now=now) == 30.0
    assert parse_retry_after(format_datetime(now - timedelta(seconds=30), usegmt=True), now=now) == 0.0
    assert parse_retry_after("-5") == 0.0
    for unusable in (None, "", "soon", "nan", "inf"):
        assert parse_retry_after(unusable) is None


def test_detail_messages_render_both_fal_error_shapes():
    listed = [
        {"loc": ["body", "prompt"], "msg": "field required", "type": "value_error.missing"},
        {"loc": [], "msg": "bad", "type": "x"},
        "odd entry",
    ]
    assert detail_messages(listed) == ["body.prompt: field required", "bad", "odd entry"]
    assert detail_messages("Request not found") == ["Request not found"]
    assert detail_messages(None) == []
    error = ModelError("failed", status_code=422, detail=listed[:1])
    assert error.detail_messages() == ["body.prompt: field required"]
    assert repr(error) == "ModelError('failed', status_code=422)"


def test_missing_key_is_a_configuration_error_naming_the_env_vars():
    with pytest.raises(FalConfigError, match="FAL_KEY"):
        QueueClient("http://127.0.0.1:9")
    with pytest.raises(FalConfigError, match="FAL_KEY_ID and FAL_KEY_SECRET"):
        QueueClient("http://127.0.0.1:9", None)
    with pytest.raises(FalConfigError, match="empty"):
        QueueClient("http://127.0.0.1:9", "  ")


def test_the_shared_client_is_built_from_the_configuration(monkeypatch):
    monkeypatch.setenv("FAL_KEY_ID", "id")
    monkeypatch.setenv("FAL_KEY_SECRET", "secret")
    monkeypatch.setenv("FAL_QUEUE_URL", "http://127.0.0.1:9/")
    close_client()
    try:
        assert get_client().base_url == "http://127.0.0.1:9"
    finally:
        close_client()


@pytest.mark.parametrize("key", ["k\nX-Evil: 1", "k é", "k\x00"])
def test_unusable_keys_are_refused_without_being_quoted(key):
    with pytest.raises(FalConfigError) as caught:
        QueueClient("http://127.0.0.1:9", key)
    assert key not in str(caught.value) and key not in repr(caught.value)


@pytest.mark.parametrize("base_url", ["ftp://host", "queue.fal.run", "http://h/?x=1", "http://"])
def test_bad_base_urls_are_configuration_errors(base_url):
    with pytest.raises(FalConfigError):
        QueueClient(base_url, "k")


def test_all_package_errors_share_the_base_class():
    assert issubclass(FalConfigError, FalError)


def test_errors_survive_pickling_for_celery():
    error = RetryableError("slow down", retry_after=2.0, status_code=429, detail="x", request_id="r")
    copy = pickle.loads(pickle.dumps(error))
    assert (type(copy), str(copy), copy.retry_after, copy.status_code, copy.request_id) == (
        RetryableError,
        "slow down",
        2.0,
        429,
        "r",
    )
    invalid = InputValidationError("fal-ai/evf-sam", [{"field": "prompt", "message": "field required"}])
    assert pickle.loads(pickle.dumps(invalid)).errors == invalid.errors
    assert str(pickle.loads(pickle.dumps(invalid))) == "fal-ai/evf-sam: prompt: field required"


def test_detail_messages_tolerate_a_string_location():
    assert detail_messages([{"loc": "body", "msg": "bad"}]) == ["body: bad"]
