"""Property tests on the deliveries API, as test_fuzz_api.py does for jobs: whatever a
hostile client sends (a cursor, a query string, an id in the path), the answer is a
documented status with the JSON error envelope, never a 5xx."""

from __future__ import annotations

import json
from urllib.parse import quote

from hypothesis import example, given
from hypothesis import strategies as st

from falbridge.models.db import transaction
from falbridge.models.deliveries import encode_cursor
from falbridge.models.inbox import store_verified
from tests.webhooks.api.test_fuzz_api import FUZZ, _b64, client, envelope, json_values  # noqa: F401


def test_any_cursor_is_a_page_or_422(client):  # noqa: F811
    with transaction() as s:
        stored = store_verified(s, request_id="req-1", body=b"{}", headers={})
    cursors = st.one_of(
        st.text(max_size=600),
        st.binary(max_size=400).map(_b64),
        json_values.map(lambda v: _b64(json.dumps(v).encode())),
        st.tuples(st.sampled_from(["d", "x", 1]), json_values | st.integers()).map(
            lambda t: _b64(json.dumps(list(t)).encode())
        ),
    )

    @FUZZ
    @given(cursor=cursors)
    @example(cursor=encode_cursor(stored.delivery_id))
    @example(cursor=_b64(json.dumps(["d", 2**64]).encode()))
    @example(cursor=_b64(json.dumps(["d", True]).encode()))
    @example(cursor=_b64(b"[" * 380))
    def check(cursor):
        response = client.get(f"/api/deliveries?limit=5&cursor={quote(cursor, safe='')}")
        assert response.status_code in (200, 422), response.get_data(as_text=True)
        if response.status_code == 422:
            assert envelope(response)["code"] in ("invalid_cursor", "invalid_request")

    check()


def test_any_query_string_for_the_listing(client):  # noqa: F811
    names = st.sampled_from(["request_id", "job_id", "processed", "outcome", "limit", "cursor", "x", ""])

    @FUZZ
    @given(pairs=st.lists(st.tuples(names, st.text(max_size=140)), max_size=5))
    @example(pairs=[("job_id", "00000000-0000-0000-0000-00000000000\u0661")])
    def check(pairs):
        query = "&".join(f"{quote(k)}={quote(v, safe='')}" for k, v in pairs)
        response = client.get(f"/api/deliveries?{query}")
        assert response.status_code in (200, 422), response.get_data(as_text=True)
        if response.status_code == 422:
            envelope(response)

    check()


def test_any_delivery_id_in_the_path(client):  # noqa: F811
    @FUZZ
    @given(delivery_id=st.text(min_size=1, max_size=40) | st.integers().map(str))
    @example(delivery_id="\u0661")  # a digit to str.isdigit(), not to int() in every form
    @example(delivery_id="9" * 40)
    def check(delivery_id):
        for method, path in (("GET", "/api/deliveries/{}"), ("POST", "/api/deliveries/{}/reapply")):
            response = client.open(path.format(quote(delivery_id, safe="")), method=method)
            assert response.status_code in (404, 405, 422), response.get_data(as_text=True)
            envelope(response)

    check()
