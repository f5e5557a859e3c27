"""Every bad input we could think of, and the 4xx (with a JSON error body) it gets back.

The tables here are the catalogue README points to: each row is a request and the exact
status and error code it must get, on SQLite and on PostgreSQL (which is the stricter
store: no NUL, no lone surrogates, no Infinity, VARCHAR lengths enforced).
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import socket

import pytest
from flask import request
from sqlalchemy import func, select

from falbridge.config import ConfigError
from falbridge.models.db import transaction
from falbridge.models.tables import Job, WebhookDelivery
from falbridge.webhooks.app import create_app
from falbridge.webhooks.limits import parse_json, read_body
from tests.plugins.db import config_with
from tests.plugins.pipeline import API_HEADERS, TEST_API_TOKEN, ServerThread

CAT = {"prompt": "cat", "image_url": "https://example.com/cat.png"}
OK_JOB = {"endpoint_id": "fal-ai/some/model", "input": {"n": 1}}

# Fixed, not drawn at collection: parallel test processes must collect the same ids.
SOME_UUID = "1d9e535a-7a7e-4ca4-a2ae-ad5cae31f516"


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def raw(endpoint: str = "fal-ai/some/model", input_json: str = '{"n": 1}', extra: str = "") -> bytes:
    return f'{{"endpoint_id": "{endpoint}", "input": {input_json}{extra}}}'.encode()


# (id, body bytes, status, error code, field named in details or None)
BAD_BODIES = [
    ("not JSON", b"{not json", 400, "invalid_json", None),
    ("empty body", b"", 400, "invalid_json", None),
    ("a JSON array", b"[1, 2]", 400, "invalid_json", None),
    ("a JSON string", b'"text"', 400, "invalid_json", None),
    ("NaN", raw(input_json='{"x": NaN}'), 400, "invalid_json", None),
    ("Infinity", raw(input_json='{"x": -Infinity}'), 400, "invalid_json", None),
    ("1e999 overflows to inf", raw(input_json='{"x": 1e999}'), 400, "invalid_json", None),
    ("-1e999", raw(input_json='{"x": -1e999}'), 400, "invalid_json", None),
    ("an integer of 5000 digits", raw(input_json='{"x": ' + "7" * 5000 + "}"), 400, "invalid_json", None),
    ("invalid UTF-8", b'{"endpoint_id": "fal-ai/x/\xff", "input": {}}', 400, "invalid_json", None),
    ("truncated", raw()[:-3], 400, "invalid_json", None),
    ("33 levels deep", raw(input_json='{"x": ' + nested(31) + "}"), 422, "json_too_deep", None),
    ("100 000 levels deep (RecursionError)", nested(100_000).encode(), 422, "json_too_deep", None),
    (
        "100 000 levels deep inside input",
        raw(input_json='{"x": ' + nested(100_000) + "}"),
        422,
        "json_too_deep",
        None,
    ),
    (
        "NUL in an input string",
        raw(input_json='{"prompt": "a\\u0000b"}'),
        422,
        "invalid_request",
        "input.prompt",
    ),
    ("NUL in an input key", raw(input_json='{"a\\u0000": 1}'), 422, "invalid_request", "input.a\ufffd"),
    ("lone high surrogate", raw(input_json='{"p": ["\\ud800"]}'), 422, "invalid_request", "input.p[0]"),
    ("lone low surrogate", raw(input_json='{"p": "x\\udfff"}'), 422, "invalid_request", "input.p"),
    ("NUL in external_id", raw(extra=', "external_id": "k\\u0000"'), 422, "invalid_request", "external_id"),
    ("NUL in metadata", raw(extra=', "metadata": {"m": "\\u0000"}'), 422, "invalid_request", "metadata.m"),
    ("NUL in endpoint_id", raw(endpoint="fal-ai/x\\u0000y"), 422, "invalid_request", "endpoint_id"),
    (
        "endpoint_id of 256 characters",
        raw(endpoint="fal-ai/" + "m" * 249),
        422,
        "invalid_request",
        "endpoint_id",
    ),
    (
        "endpoint_id of 100 000 characters",
        raw(endpoint="fal-ai/" + "m" * 100_000),
        422,
        "invalid_request",
        "endpoint_id",
    ),
    ("input is null", raw(input_json="null"), 422, "invalid_request", "input"),
    (
        "blur_mask 5.5",
        raw("fal-ai/evf-sam", json.dumps({**CAT, "blur_mask": 5.5})),
        422,
        "invalid_input",
        "blur_mask",
    ),
    (
        "blur_mask true",
        raw("fal-ai/evf-sam", json.dumps({**CAT, "blur_mask": True})),
        422,
        "invalid_input",
        "blur_mask",
    ),
]


@pytest.fixture
def make_app(db_url, redis_url, monkeypatch, tmp_path):
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("FALBRIDGE_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("FALBRIDGE_API_TOKENS", TEST_API_TOKEN)
    return lambda **variables: create_app(
        config_with(**{name: str(value) for name, value in variables.items()})
    )


@pytest.fixture
def client(make_app):
    client = make_app().test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = API_HEADERS["Authorization"]
    return client


def count(model=Job) -> int:
    with transaction() as s:
        return s.scalar(select(func.count()).select_from(model))


def error_of(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)[:500]
    assert response.mimetype == "application/json"
    error = response.get_json()["error"]
    assert error["code"] == code and error["message"], error
    return error


@pytest.mark.parametrize("case, body, status, code, field", BAD_BODIES, ids=[b[0] for b in BAD_BODIES])
def test_bad_submit_bodies_are_4xx_json(client, case, body, status, code, field):
    error = error_of(client.post("/api/jobs", data=body, content_type="application/json"), status, code)
    if field is not None:
        assert field in {d["field"] for d in error["details"]}
    assert count() == 0


def test_the_nesting_error_names_the_limit(client):
    error = error_of(
        client.post(
            "/api/jobs", data=raw(input_json='{"x": ' + nested(40) + "}"), content_type="application/json"
        ),
        422,
        "json_too_deep",
    )
    assert "32 levels" in error["message"] and error["details"]["setting"] == "FALBRIDGE_MAX_JSON_DEPTH"


def test_32_levels_are_fine(client):
    body = raw(input_json='{"x": ' + nested(30) + "}")  # the body, input and 30 arrays
    assert client.post("/api/jobs", data=body, content_type="application/json").status_code == 202


# -- keys, items and how many errors are reported ------------------------------------------

UNKNOWN_KEYS = {f"x_{i:05d}": 0 for i in range(100_000)}  # 1.3 MB as JSON


def test_keys_per_object_and_items_per_array_are_limited_naming_the_variable(client):
    fits = {"endpoint_id": "fal-ai/x/y", "input": {"a": [0] * 10_000, **{f"k{i}": 0 for i in range(999)}}}
    assert client.post("/api/jobs", json=fits).status_code == 202
    error = error_of(
        client.post(
            "/api/jobs", json={"endpoint_id": "fal-ai/x/y", "input": {f"k{i}": 0 for i in range(1001)}}
        ),
        422,
        "json_too_many_keys",
    )
    assert error["message"] == "JSON object with more than 1000 keys (FALBRIDGE_MAX_JSON_KEYS)"
    assert error["details"] == {"limit": 1000, "setting": "FALBRIDGE_MAX_JSON_KEYS"}
    error = error_of(
        client.post("/api/jobs", json={**OK_JOB, "metadata": {"m": [0] * 10_001}}), 422, "json_too_many_items"
    )
    assert (
        error["message"] == "JSON array with more than 10000 items at metadata.m (FALBRIDGE_MAX_JSON_ITEMS)"
    )
    assert error["details"] == {"limit": 10_000, "setting": "FALBRIDGE_MAX_JSON_ITEMS"}
    assert count() == 1


def test_key_and_item_limits_are_configurable(make_app):
    client = make_app(FALBRIDGE_MAX_JSON_KEYS=3, FALBRIDGE_MAX_JSON_ITEMS=2).test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = API_HEADERS["Authorization"]
    assert client.post("/api/jobs", json={**OK_JOB, "metadata": {"m": [1, 2]}}).status_code == 202
    error_of(
        client.post("/api/jobs", json={**OK_JOB, "metadata": {"m": [1, 2, 3]}}), 422, "json_too_many_items"
    )
    error_of(client.post("/api/jobs", json={**OK_JOB, "metadata": {}, "x": 1}), 422, "json_too_many_keys")


def test_100_000_unknown_input_keys_are_refused_while_parsing(client):
    body = json.dumps({"endpoint_id": "fal-ai/evf-sam", "input": {**CAT, **UNKNOWN_KEYS}}).encode()
    response = client.post("/api/jobs", data=body, content_type="application/json")
    error_of(response, 422, "json_too_many_keys")
    assert len(response.data) < 500


def test_at_most_20_input_errors_are_reported_with_a_count_of_the_rest(make_app):
    # With the key limit lifted, the 100 000 unknown keys all reach validation.
    client = make_app(FALBRIDGE_MAX_JSON_KEYS=200_000).test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = API_HEADERS["Authorization"]
    body = {"endpoint_id": "fal-ai/evf-sam", "input": {**CAT, **UNKNOWN_KEYS}}
    response = client.post("/api/jobs", json=body)
    error = error_of(response, 422, "invalid_input")
    assert [d["field"] for d in error["details"]] == [f"x_{i:05d}" for i in range(20)]
    assert error["message"].endswith("x_00019: unknown field; ... and 99980 more")
    assert len(response.data) < 5000


def test_at_most_20_request_errors_are_reported_with_a_count_of_the_rest(client):
    body = {"input": {}, **{f"zz_{i:03d}": 0 for i in range(100)}}  # and no endpoint_id
    error = error_of(client.post("/api/jobs", json=body), 422, "invalid_request")
    assert [d["field"] for d in error["details"]] == ["endpoint_id"] + [f"zz_{i:03d}" for i in range(19)]
    assert error["message"].endswith("zz_018: unknown field; ... and 81 more")
    error = error_of(
        client.get("/api/jobs?" + "&".join(f"p{i:02d}=1" for i in range(30))), 422, "invalid_request"
    )
    assert len(error["details"]) == 20 and error["message"].endswith("; ... and 10 more")


def test_the_cap_holds_for_validation_outside_the_api_too():
    import pickle

    from falbridge.worker.fal import InputValidationError, validate_input

    with pytest.raises(InputValidationError) as caught:
        validate_input("fal-ai/evf-sam", {**CAT, **{f"x_{i:02d}": 0 for i in range(25)}})
    assert len(caught.value.errors) == 20 and caught.value.omitted == 5
    assert str(caught.value).endswith("; ... and 5 more")
    again = pickle.loads(pickle.dumps(caught.value))  # Celery pickles it
    assert (again.errors, again.omitted, str(again)) == (caught.value.errors, 5, str(caught.value))


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/jsonx",
    ],
)
def test_a_body_that_is_not_declared_json_is_415(client, content_type):
    headers = {"Content-Type": content_type} if content_type else {}
    error_of(
        client.post("/api/jobs", data=json.dumps(OK_JOB), headers=headers), 415, "unsupported_media_type"
    )
    assert count() == 0


@pytest.mark.parametrize("content_type", ["application/json; charset=utf-8", "application/vnd.api+json"])
def test_json_media_types_with_parameters_are_fine(client, content_type):
    r = client.post("/api/jobs", data=json.dumps(OK_JOB), headers={"Content-Type": content_type})
    assert r.status_code == 202, r.get_data(as_text=True)


def test_integral_floats_count_as_integers_for_typed_inputs(client):
    # JSON has one number type; schemathesis found 67076.0 refused for an integer field.
    body = {"endpoint_id": "fal-ai/evf-sam", "input": {**CAT, "blur_mask": 5.0, "expand_mask": 67076.0}}
    r = client.post("/api/jobs", json=body)
    assert r.status_code == 202, r.get_data(as_text=True)
    assert r.get_json()["input"]["blur_mask"] == 5 and r.get_json()["input"]["expand_mask"] == 67076
    passthrough = client.post("/api/jobs", json={"endpoint_id": "fal-ai/x/y", "input": {"s": 5.0}})
    assert passthrough.get_json()["input"] == {"s": 5.0}  # left exactly as sent


def test_a_valid_surrogate_pair_is_one_character_and_fine(client):
    r = client.post(
        "/api/jobs", data=raw(input_json='{"p": "\\ud83d\\ude00"}'), content_type="application/json"
    )
    assert r.status_code == 202 and r.get_json()["input"] == {"p": "\U0001f600"}


# -- size limits ------------------------------------------------------------------


def test_input_over_its_limit_is_413_naming_it(make_app):
    client = make_app(FALBRIDGE_MAX_INPUT_BYTES=1000, FALBRIDGE_MAX_METADATA_BYTES=100).test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = API_HEADERS["Authorization"]
    fits = {"endpoint_id": "fal-ai/x/y", "input": {"b": "a" * 980}}  # 989 bytes as compact JSON
    assert client.post("/api/jobs", json=fits).status_code == 202
    error = error_of(
        client.post("/api/jobs", json={"endpoint_id": "fal-ai/x/y", "input": {"b": "a" * 1000}}),
        413,
        "input_too_large",
    )
    assert error["details"] == {"field": "input", "limit_bytes": 1000, "setting": "FALBRIDGE_MAX_INPUT_BYTES"}
    # Multi-byte characters count as the bytes they take.
    error_of(
        client.post("/api/jobs", json={"endpoint_id": "fal-ai/x/y", "input": {"b": "é" * 500}}),
        413,
        "input_too_large",
    )
    error = error_of(
        client.post("/api/jobs", json={**OK_JOB, "metadata": {"m": "x" * 100}}), 413, "metadata_too_large"
    )
    assert error["details"]["setting"] == "FALBRIDGE_MAX_METADATA_BYTES"
    assert count() == 1


def test_default_input_limit_is_12_mib(client):
    blob = "a" * (12 * 1024 * 1024)
    error_of(
        client.post("/api/jobs", json={"endpoint_id": "fal-ai/x/y", "input": {"b": blob}}),
        413,
        "input_too_large",
    )
    error_of(
        client.post("/api/jobs", json={**OK_JOB, "metadata": {"m": "x" * 65536}}), 413, "metadata_too_large"
    )
    assert count() == 0


def test_api_body_over_its_limit_is_413_naming_it(make_app):
    client = make_app(FALBRIDGE_MAX_API_BODY_BYTES=2048).test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = API_HEADERS["Authorization"]
    error = error_of(
        client.post("/api/jobs", json={"endpoint_id": "fal-ai/x/y", "input": {"b": "a" * 4096}}),
        413,
        "request_entity_too_large",
    )
    assert error["details"] == {"limit_bytes": 2048, "setting": "FALBRIDGE_MAX_API_BODY_BYTES"}


@pytest.mark.parametrize("name, value", [("FALBRIDGE_MAX_JSON_DEPTH", 0), ("FALBRIDGE_MAX_INPUT_BYTES", -1)])
def test_nonsense_limits_stop_the_app_from_starting(make_app, name, value):
    with pytest.raises(ConfigError, match=name):
        make_app(**{name: value})


# -- listing, showing, cancelling -----------------------------------------------------


def _b64(text: str | bytes) -> str:
    data = text.encode() if isinstance(text, str) else text
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


BAD_QUERIES = [
    ("limit=0", "invalid_request"),
    ("limit=501", "invalid_request"),
    ("limit=-1", "invalid_request"),
    ("limit=1e2", "invalid_request"),
    ("limit=%EF%BC%95", "invalid_request"),  # a full-width 5
    ("limit=" + "9" * 5000, "invalid_request"),
    ("status=%00", "invalid_request"),
    ("endpoint_id=a%00b", "invalid_request"),
    ("external_id=%00", "invalid_request"),
    ("endpoint_id=" + "e" * 256, "invalid_request"),
    ("external_id=" + "e" * 100_000, "invalid_request"),
    ("created_after=%00", "invalid_request"),
    ("created_before=2024-02-30", "invalid_request"),
    ("created_after=" + "9" * 5000, "invalid_request"),
    ("cursor=" + "c" * 513, "invalid_request"),
    ("cursor=%00", "invalid_request"),
    ("cursor=" + _b64(nested(100_000)), "invalid_request"),  # over 512 characters
    ("cursor=" + _b64(nested(190)), "invalid_cursor"),
    ("cursor=" + _b64(json.dumps(["0001-01-01T00:00:00+05:00", SOME_UUID])), "invalid_cursor"),
    ("cursor=" + _b64(b"\xff\xfe\x00"), "invalid_cursor"),
    ("cursor=" + _b64(json.dumps([1, 2, 3])), "invalid_cursor"),
    ("cursor=%F0%9F%98%80", "invalid_cursor"),
    ("limit=5&limit=6", "invalid_request"),
    ("cursr=x", "invalid_request"),
]


@pytest.mark.parametrize("query, code", BAD_QUERIES, ids=[q[:40] for q, _ in BAD_QUERIES])
def test_bad_listing_queries_are_422(client, query, code):
    error_of(client.get(f"/api/jobs?{query}"), 422, code)


@pytest.mark.parametrize(
    "query",
    [
        "created_after=0001-01-01T00:00:00%2B05:00",
        "created_before=9999-12-31T23:59:59-05:00",
        "created_after=0001-01-01&created_before=9999-12-31",
    ],
)
def test_instants_just_outside_python_range_are_clamped_not_refused(client, query):
    # Valid RFC 3339 instants that datetime can't convert to UTC: "since/until forever".
    assert client.get(f"/api/jobs?{query}").status_code == 200


@pytest.mark.parametrize("job_id", ["%00", "x" * 10_000, "%F0%9F%98%80", "..", "%2e%2e", SOME_UUID.upper()])
def test_odd_job_ids_are_404(client, job_id):
    error_of(client.get(f"/api/jobs/{job_id}"), 404, "not_found")
    error_of(client.post(f"/api/jobs/{job_id}/cancel"), 404, "not_found")


@pytest.mark.parametrize(
    "method, path, status, code",
    [
        ("PUT", "/api/jobs", 405, "method_not_allowed"),
        ("DELETE", "/api/jobs/x", 405, "method_not_allowed"),
        ("GET", "/api/jobs/x/cancel", 405, "method_not_allowed"),
        ("GET", "/api/nothing/here", 404, "not_found"),
        ("GET", "/nothing", 404, "not_found"),
        ("GET", "/webhooks/fal", 405, "method_not_allowed"),
        # Not werkzeug's 308 redirect with an HTML page (fuzzing found it: a job id "0/").
        ("POST", "/api/jobs/0//cancel", 404, "not_found"),
        ("GET", "/api//jobs", 404, "not_found"),
        ("GET", "//api/jobs", 404, "not_found"),
    ],
)
def test_routing_errors_are_json_with_allow(client, method, path, status, code):
    response = client.open(path, method=method)
    error_of(response, status, code)
    if status == 405:
        assert response.headers["Allow"]


# -- the webhook body limit, over real HTTP ----------------------------------------------


def _http(port: int, request: bytes, *, then: bytes = b"", timeout: float = 20.0) -> bytes:
    """Send raw bytes, keep the connection open, return the answer (or what came)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        if then:
            with contextlib.suppress(OSError):  # the server answered and closed: that is the point
                sock.sendall(then)
        answer = b""
        while b"\r\n\r\n" not in answer or not _complete(answer):
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
        return answer


def _complete(answer: bytes) -> bool:
    head, _, body = answer.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(body) >= int(line.split(b":")[1])
    return False


def _status_and_json(answer: bytes):
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), json.loads(body)


@pytest.fixture
def small_receiver(make_app):
    server = ServerThread(
        make_app(FALBRIDGE_MAX_WEBHOOK_BYTES=64 * 1024, FALBRIDGE_MAX_API_BODY_BYTES=32 * 1024)
    ).start()
    yield server
    server.stop()


# Signature headers, none of them valid: without them a callback is refused unread (401)
# before its size matters; with them, the body must be read, and its size is the question.
SIGNATURE_HEADER_LINES = (
    b"X-Fal-Webhook-Request-Id: r\r\nX-Fal-Webhook-User-Id: u\r\n"
    b"X-Fal-Webhook-Timestamp: 1\r\nX-Fal-Webhook-Signature: 00\r\n"
)
SIGNATURE_HEADERS = {
    "X-Fal-Webhook-Request-Id": "r",
    "X-Fal-Webhook-User-Id": "u",
    "X-Fal-Webhook-Timestamp": "1",
    "X-Fal-Webhook-Signature": "00",
}


def test_declared_oversized_webhook_is_413_before_the_body_is_sent(small_receiver):
    # Content-Length says 11 MB and not one body byte follows: an answer at all proves
    # the server did not wait to read the body.
    request = (
        b"POST /webhooks/fal HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + SIGNATURE_HEADER_LINES
        + b"Content-Length: 11534336\r\n\r\n"
    )
    status, body = _status_and_json(_http(small_receiver.port, request))
    assert status == 413 and body["error"]["code"] == "request_entity_too_large"
    assert body["error"]["details"] == {"limit_bytes": 65536, "setting": "FALBRIDGE_MAX_WEBHOOK_BYTES"}
    assert count(WebhookDelivery) == 0


def test_chunked_oversized_webhook_is_413_without_reading_it_all(small_receiver):
    # No Content-Length: 100 KiB of chunks, and the body is never finished (no 0-chunk).
    request = (
        b"POST /webhooks/fal HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        + SIGNATURE_HEADER_LINES
        + b"\r\n"
    )
    chunk = b"%x\r\n%s\r\n" % (4096, b"a" * 4096)
    status, body = _status_and_json(_http(small_receiver.port, request, then=chunk * 25))
    assert status == 413 and body["error"]["code"] == "request_entity_too_large"
    assert count(WebhookDelivery) == 0


def test_chunked_oversized_api_body_is_413_too(small_receiver):
    request = (
        b"POST /api/jobs HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        b"Content-Type: application/json\r\nAuthorization: "
        + API_HEADERS["Authorization"].encode()
        + b"\r\n\r\n"
    )
    chunk = b"%x\r\n%s\r\n" % (4096, b" " * 4096)
    status, body = _status_and_json(_http(small_receiver.port, request, then=chunk * 10))
    assert status == 413
    assert body["error"]["details"] == {"limit_bytes": 32768, "setting": "FALBRIDGE_MAX_API_BODY_BYTES"}
    assert count() == 0


def test_chunked_webhook_under_the_limit_is_read_and_judged(small_receiver):
    request = (
        b"POST /webhooks/fal HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n"
        + SIGNATURE_HEADER_LINES
        + b"\r\n"
    )
    status, body = _status_and_json(_http(small_receiver.port, request, then=b"2\r\n{}\r\n0\r\n\r\n"))
    assert status == 401 and body["error"]["code"] == "invalid_signature"
    with transaction() as s:
        assert s.scalars(select(WebhookDelivery.body)).one() == b"{}"


def _webhook_request(body: bytes, *, chunked: bool) -> tuple[bytes, bytes]:
    """A callback with `body`, its length declared or sent in chunks (ending the body)."""
    framing = b"Transfer-Encoding: chunked" if chunked else b"Content-Length: %d" % len(body)
    head = (
        b"POST /webhooks/fal HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        + SIGNATURE_HEADER_LINES
        + framing
        + b"\r\n\r\n"
    )
    if chunked:
        body = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in (body[:40000], body[40000:])) + b"0\r\n\r\n"
    return head, body


@pytest.fixture
def limited_receiver(make_app, request):
    """A receiver whose webhook limit is the test's parameter (an even and an odd one)."""
    server = ServerThread(make_app(FALBRIDGE_MAX_WEBHOOK_BYTES=request.param)).start()
    yield server, request.param
    server.stop()


@pytest.mark.parametrize("chunked", [False, True], ids=["declared length", "chunked"])
@pytest.mark.parametrize("limited_receiver", [64 * 1024, 64 * 1024 + 1], indirect=True)
def test_a_webhook_of_exactly_the_limit_is_read_and_one_byte_more_refused(limited_receiver, chunked):
    small_receiver, limit = limited_receiver
    head, body = _webhook_request(b"a" * limit, chunked=chunked)
    status, answer = _status_and_json(_http(small_receiver.port, head, then=body))
    assert status == 401 and answer["error"]["code"] == "invalid_signature"  # read whole, then judged
    with transaction() as s:
        assert s.scalars(select(WebhookDelivery.body_length)).one() == limit
    head, body = _webhook_request(b"a" * (limit + 1), chunked=chunked)
    status, answer = _status_and_json(_http(small_receiver.port, head, then=body))
    assert status == 413 and answer["error"]["code"] == "request_entity_too_large"
    assert count(WebhookDelivery) == 1


def test_a_declared_length_past_the_one_byte_read_ahead_is_refused_unread(small_receiver):
    # The limit + 1 byte read tells an oversized chunked body from one of exactly the
    # limit; a length declared beyond that is refused before a byte of the body is sent.
    head, _ = _webhook_request(b"a" * (64 * 1024 + 2), chunked=False)
    status, answer = _status_and_json(_http(small_receiver.port, head, timeout=5))
    assert status == 413 and answer["error"]["code"] == "request_entity_too_large"
    assert count(WebhookDelivery) == 0


def test_the_json_limits_are_passed_by_name():
    with pytest.raises(TypeError):
        parse_json(b"{}", 32)  # type: ignore[misc]
    assert parse_json(b"{}", max_depth=32) == {}


def test_default_webhook_limit_is_10_mib(make_app):
    client = make_app().test_client()
    error_of(
        client.post("/webhooks/fal", data=b"a" * (10 * 1024 * 1024 + 1), headers=SIGNATURE_HEADERS),
        413,
        "request_entity_too_large",
    )
    # The same limit without a Content-Length, from a server that terminates the stream
    # itself (gunicorn, werkzeug's for chunked bodies): refused, not truncated.
    stream = io.BytesIO(b"a" * (10 * 1024 * 1024 + 1))
    response = client.post(
        "/webhooks/fal",
        input_stream=stream,
        headers={"Transfer-Encoding": "chunked", **SIGNATURE_HEADERS},
        environ_overrides={"wsgi.input_terminated": True},
    )
    error_of(response, 413, "request_entity_too_large")
    assert count(WebhookDelivery) == 0


def test_a_huge_unknown_field_name_is_not_echoed_whole(client):
    body = json.dumps({**OK_JOB, "k" * 1_000_000: 1})
    error = error_of(
        client.post("/api/jobs", data=body, content_type="application/json"), 422, "invalid_request"
    )
    assert error["details"] == [{"field": "k" * 64, "message": "unknown field"}]


def test_a_body_is_read_once_and_not_kept_on_the_request(make_app):
    """A callback may be 10 MiB: read_body hands it over without werkzeug keeping a copy."""
    with make_app().test_request_context("/webhooks/fal", method="POST", data=b"x" * 1000):
        assert read_body(1000, "FALBRIDGE_MAX_WEBHOOK_BYTES") == b"x" * 1000
        assert request.get_data() == b""
