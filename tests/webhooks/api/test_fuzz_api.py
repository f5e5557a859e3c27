"""Property tests on the jobs API: whatever arrives, the answer is a documented status with
the JSON error envelope, never a 5xx. Complements schemathesis (test_openapi.py), which
generates from the schema; these generate from what a hostile client could send.
"""

from __future__ import annotations

import base64
import json
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from falbridge.models.db import transaction
from falbridge.models.jobs import create_job
from falbridge.models.listing import encode_cursor
from falbridge.webhooks.app import create_app
from tests.plugins.db import config_with
from tests.plugins.pipeline import API_HEADERS, TEST_API_TOKEN

FUZZ = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
SUBMIT_STATUSES = {200, 202, 400, 409, 413, 415, 422}

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(codec="utf-8")),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)


@pytest.fixture
def client(db_url, redis_url, monkeypatch, tmp_path):
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("FALBRIDGE_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("FALBRIDGE_API_TOKENS", TEST_API_TOKEN)
    monkeypatch.setattr("falbridge.worker.actions.enqueue_follow_ups", lambda follow_ups: None)
    client = create_app(config_with(FALBRIDGE_MAX_API_BODY_BYTES="8192")).test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = API_HEADERS["Authorization"]
    return client


def envelope(response) -> dict:
    body = response.get_json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}, body
    return body["error"]


def test_any_bytes_as_a_submit_body(client):
    @FUZZ
    @given(
        body=st.one_of(st.binary(max_size=10_000), json_values.map(lambda v: json.dumps(v).encode())),
        content_type=st.sampled_from(["application/json", "text/plain", None, "application/problem+json"]),
    )
    @example(
        body=b'{"endpoint_id": "fal-ai/x/y", "input": {"a": "\\ud800"}}', content_type="application/json"
    )
    @example(body=b'{"endpoint_id": "fal-ai/x/y", "input": {"a": 1e400}}', content_type="application/json")
    def check(body, content_type):
        headers = {"Content-Type": content_type} if content_type else {}
        response = client.post("/api/jobs", data=body, headers=headers)
        assert response.status_code in SUBMIT_STATUSES, response.get_data(as_text=True)
        if response.status_code >= 400:
            envelope(response)

    check()


def test_any_input_for_the_typed_and_passthrough_endpoints(client):
    inputs = st.one_of(
        json_values,
        st.dictionaries(
            st.sampled_from(
                ["prompt", "image_url", "blur_mask", "expand_mask", "mask_only", "negative_prompt", "extra"]
            ),
            st.one_of(
                json_values,
                st.integers(-5, 60),
                st.floats(-1, 60),
                st.sampled_from(
                    ["", " ", "\u3000", "https://x/y.png", "data:,", "HTTP://X", "ftp://x", "cat"]
                ),
            ),
        ),
    )

    @FUZZ
    @given(
        endpoint=st.sampled_from(
            ["fal-ai/evf-sam", "fal-ai/florence-2-large/region-proposal", "fal-ai/any/model", "workflows/a/b"]
        ),
        payload=inputs,
        metadata=st.one_of(st.none(), json_values),
        external_id=st.one_of(st.none(), st.text(max_size=300)),
    )
    def check(endpoint, payload, metadata, external_id):
        body = {"endpoint_id": endpoint, "input": payload, "metadata": metadata, "external_id": external_id}
        response = client.post("/api/jobs", json=body)
        assert response.status_code in SUBMIT_STATUSES, response.get_data(as_text=True)
        if response.status_code in (200, 202):
            assert response.get_json()["endpoint_id"] == endpoint
        else:
            envelope(response)

    check()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def test_any_cursor_is_a_page_or_422(client):
    # schemathesis can't generate valid cursors (they are opaque), so the cursor is fuzzed
    # here: raw text, base64 of anything, and base64 of near-valid positions.
    with transaction() as s:
        job, _ = create_job(s, "fal-ai/x/y", {})
        real = encode_cursor(job)
    cursors = st.one_of(
        st.text(max_size=600),
        st.binary(max_size=400).map(_b64),
        json_values.map(lambda v: _b64(json.dumps(v).encode())),
        st.tuples(
            st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()),
            st.one_of(st.uuids().map(str), json_values),
        ).map(lambda t: _b64(json.dumps(list(t)).encode())),
    )

    @FUZZ
    @given(cursor=cursors)
    @example(cursor=real)
    @example(cursor=_b64(json.dumps(["0001-01-01T00:00:00+05:00", str(job.id)]).encode()))
    @example(cursor=_b64(b"[" * 380))
    def check(cursor):
        response = client.get(f"/api/jobs?limit=5&cursor={quote(cursor, safe='')}")
        assert response.status_code in (200, 422), response.get_data(as_text=True)
        if response.status_code == 422:
            assert envelope(response)["code"] in ("invalid_cursor", "invalid_request")

    check()


def test_any_query_string_for_the_listing(client):
    names = st.sampled_from(
        [
            "status",
            "endpoint_id",
            "external_id",
            "created_after",
            "created_before",
            "limit",
            "cursor",
            "x",
            "",
        ]
    )

    @FUZZ
    @given(pairs=st.lists(st.tuples(names, st.text(max_size=40)), max_size=5))
    @example(
        pairs=[
            ("created_after", "0001-01-01T00:00:00+14:00"),
            ("created_before", "9999-12-31T23:59:59-14:00"),
        ]
    )
    def check(pairs):
        query = "&".join(f"{quote(k)}={quote(v, safe='')}" for k, v in pairs)
        response = client.get(f"/api/jobs?{query}")
        assert response.status_code in (200, 422), response.get_data(as_text=True)
        if response.status_code == 422:
            envelope(response)

    check()


def test_any_job_id_in_the_path(client):
    @FUZZ
    @given(job_id=st.text(min_size=1, max_size=300))
    def check(job_id):
        for method, path in (("GET", "/api/jobs/{}"), ("POST", "/api/jobs/{}/cancel")):
            response = client.open(path.format(quote(job_id, safe="")), method=method)
            assert response.status_code in (404, 405), response.get_data(as_text=True)
            envelope(response)

    check()
