"""Property tests on the webhook edge: the verifier and the receiver take any bytes and
any header values and answer with a verdict, never an exception or a 5xx.

Hypothesis found, and these now pin down: a timestamp header of 400 digits made the
verifier raise OverflowError and one of 5000 digits ValueError (both a 500 from the
receiver); a header holding NUL could not be stored on PostgreSQL (a 500); a signed body
nested 100 000 deep raised RecursionError in the receiver (a 500).
"""

from __future__ import annotations

import hashlib
import json
import time

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from falbridge.models.db import transaction
from falbridge.models.tables import WebhookDelivery
from falbridge.sandbox.signing import sign
from falbridge.webhooks.app import create_app
from falbridge.webhooks.receive.jwks import JwksCache
from falbridge.webhooks.receive.verify import (
    HEADER_REQUEST_ID,
    HEADER_SIGNATURE,
    HEADER_TIMESTAMP,
    HEADER_USER_ID,
    SIGNATURE_HEADERS,
    VerificationError,
    verify,
)
from tests.plugins.db import config_with

FUZZ = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# What a header can hold through Flask's test client: anything but CR and LF (werkzeug
# refuses those), including NUL, non-latin-1 text and lone surrogates.
ODD = st.sampled_from(["\x00", "\ud800", "\udfff", "\u2028", "é", "\x7f", " ", "\t", "０", "٣"])
header_text = st.lists(st.one_of(st.characters(exclude_characters="\r\n"), ODD), max_size=80).map("".join)
timestamps = st.one_of(
    header_text,
    st.integers(0, 10**20).map(str),
    st.integers(1, 6000).map(lambda n: "9" * n),  # the OverflowError / ValueError digits
    st.just(None).map(lambda _: str(int(time.time()))),
)
signatures = st.one_of(
    header_text,
    st.binary(min_size=0, max_size=80).map(bytes.hex),
    st.binary(min_size=64, max_size=64).map(bytes.hex),
)
header_sets = st.fixed_dictionaries(
    {},
    optional={
        HEADER_REQUEST_ID: header_text,
        HEADER_USER_ID: header_text,
        HEADER_TIMESTAMP: timestamps,
        HEADER_SIGNATURE: signatures,
        "Content-Type": header_text,
        "User-Agent": header_text,
    },
)
bodies = st.one_of(st.binary(max_size=2048), st.text(max_size=200).map(str.encode))


@pytest.fixture
def jwks(sandbox):
    return JwksCache(sandbox.jwks_url, refetch_min_age_s=3600)


def _key(sandbox):
    return sandbox.server.core.keys.signing_key


# -- the verifier ----------------------------------------------------------------------


def test_verifier_returns_or_raises_verification_error_for_any_input(jwks):
    @FUZZ
    @given(headers=header_sets, body=bodies)
    @example(
        headers={
            HEADER_REQUEST_ID: "r",
            HEADER_USER_ID: "u",
            HEADER_TIMESTAMP: "9" * 400,
            HEADER_SIGNATURE: "ab" * 64,
        },
        body=b"{}",
    )
    @example(
        headers={
            HEADER_REQUEST_ID: "r",
            HEADER_USER_ID: "u",
            HEADER_TIMESTAMP: "9" * 5000,
            HEADER_SIGNATURE: "ab" * 64,
        },
        body=b"{}",
    )
    @example(
        headers={
            HEADER_REQUEST_ID: "r\ud800",
            HEADER_USER_ID: "u",
            HEADER_TIMESTAMP: str(int(time.time())),
            HEADER_SIGNATURE: "ab" * 64,
        },
        body=b"",
    )
    def check(headers, body):
        try:
            verify(headers, body, jwks)
        except VerificationError as exc:
            assert exc.reason
        else:  # without fal's private key nothing random can verify
            raise AssertionError(f"verified random headers {headers!r}")

    check()


def test_what_fal_signs_verifies_and_any_change_does_not(sandbox, jwks):
    ids = st.text(
        st.characters(exclude_characters="\r\n", exclude_categories=("Cs",)), min_size=1, max_size=60
    ).filter(lambda s: s == s.strip())

    @FUZZ
    @given(request_id=ids, user_id=ids, body=bodies, flip=st.integers(0, 10**6))
    def check(request_id, user_id, body, flip):
        timestamp = str(int(time.time()))
        headers = {
            HEADER_REQUEST_ID: request_id,
            HEADER_USER_ID: user_id,
            HEADER_TIMESTAMP: timestamp,
            HEADER_SIGNATURE: sign(_key(sandbox), request_id, user_id, timestamp, body),
        }
        verified = verify(headers, body, jwks)
        assert (verified.request_id, verified.user_id, verified.timestamp) == (
            request_id,
            user_id,
            int(timestamp),
        )
        tampered = bytearray(body or b"\x00")
        tampered[flip % len(tampered)] ^= 1 << (flip % 8)
        with pytest.raises(VerificationError):
            verify(headers, bytes(tampered) if body else b"x", jwks)

    check()


# -- the receiver over Flask's test client ------------------------------------------------


@pytest.fixture
def receiver(db_url, redis_url, sandbox, monkeypatch):
    monkeypatch.setenv("REDIS_URL", redis_url)
    enqueued = []
    # Storage is under test here, not processing: keep these deliveries out of Redis.
    monkeypatch.setattr("falbridge.webhooks.receive.view.wake_drainer", lambda: enqueued.append(()))
    app = create_app(config_with(FAL_JWKS_URL=sandbox.jwks_url, FALBRIDGE_MAX_WEBHOOK_BYTES="4096"))
    return app.test_client()


def _rows() -> int:
    with transaction() as s:
        return s.scalar(select(func.count()).select_from(WebhookDelivery))


def _last():
    with transaction() as s:
        return s.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id.desc()).limit(1)).one()


def test_receiver_answers_any_request_with_4xx_json_and_a_stored_rejection(receiver):
    @FUZZ
    # A URL can't carry a lone surrogate (percent-decoding replaces bad UTF-8), NUL it can.
    @given(
        headers=header_sets,
        body=bodies,
        job=st.one_of(st.none(), st.text(st.characters(exclude_categories=("Cs",)), max_size=80)),
    )
    @example(
        headers={
            HEADER_REQUEST_ID: "a\x00b",
            HEADER_USER_ID: "\ud800",
            HEADER_TIMESTAMP: "9" * 400,
            HEADER_SIGNATURE: "\x00",
        },
        body=b"\x00\xff",
        job="\x00",
    )
    @example(headers={HEADER_REQUEST_ID: "r" * 100_000}, body=b"", job="j" * 100_000)
    def check(headers, body, job):
        before = _rows()
        query = {"job": job} if job is not None else {}
        response = receiver.post("/webhooks/fal", data=body, headers=headers, query_string=query)
        unsigned = any(not (headers.get(name) or "").strip() for name in SIGNATURE_HEADERS)
        if len(body) > 4096 and not unsigned:  # an unsigned body is refused unread, whatever its size
            assert response.status_code == 413
            return
        assert response.status_code == 401, response.get_data(as_text=True)
        assert response.get_json()["error"]["code"] == "invalid_signature"
        assert _rows() == before + 1
        row = _last()
        assert not row.verified and row.rejection_reason and row.rejected_as
        if unsigned:  # not read: its length is what it declared (nothing, for an empty body)
            assert (row.body, row.body_sha256, row.rejected_as) == (b"", None, "missing_headers")
            assert row.body_length in ({len(body)} if body else {0, None})
        else:
            assert row.body == body[:4096] and row.body_sha256 == hashlib.sha256(body).hexdigest()
            assert row.body_length == len(body)

    check()


def test_receiver_stores_any_signed_body_once_as_accepted_or_rejected(receiver, sandbox):
    json_bodies = st.recursive(
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.text(),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
        max_leaves=20,
    ).map(lambda v: json.dumps(v).encode())
    as_callback = st.builds(
        lambda rid, payload: json.dumps({"request_id": rid, "status": "OK", "payload": payload}).encode(),
        st.just("req-fuzz"),
        st.dictionaries(st.text(max_size=8), st.integers(), max_size=3),
    )

    @FUZZ
    @given(body=st.one_of(bodies, json_bodies, as_callback))
    @example(body=b'{"request_id": "req-fuzz", "payload": ' + b"[" * 2000 + b"]" * 2000 + b"}")
    @example(body=b"[" * 4000)
    def check(body):
        before, timestamp = _rows(), str(int(time.time()))
        headers = {
            HEADER_REQUEST_ID: "req-fuzz",
            HEADER_USER_ID: "sandbox-user",
            HEADER_TIMESTAMP: timestamp,
            HEADER_SIGNATURE: sign(_key(sandbox), "req-fuzz", "sandbox-user", timestamp, body),
        }
        response = receiver.post("/webhooks/fal", data=body, headers=headers)
        if len(body) > 4096:
            assert response.status_code == 413
            return
        assert response.status_code in (200, 401), response.get_data(as_text=True)
        if response.status_code == 401:
            assert response.get_json()["error"]["code"] == "request_id_mismatch"
            assert _rows() == before + 1 and not _last().verified
        else:  # stored once: the same signed body again is the same row (a re-delivery)
            answer = response.get_json()
            assert _rows() == before + (0 if answer["duplicate"] else 1)
            with transaction() as s:
                assert s.get(WebhookDelivery, answer["delivery_id"]).verified

    check()


def test_a_signed_but_unstorable_request_id_is_recorded_as_rejected(receiver, sandbox):
    for request_id in ["x" * 129, "a\x00b"]:
        body = json.dumps({"request_id": request_id, "status": "OK", "payload": {}}).encode()
        timestamp = str(int(time.time()))
        response = receiver.post(
            "/webhooks/fal",
            data=body,
            headers={
                HEADER_REQUEST_ID: request_id,
                HEADER_USER_ID: "sandbox-user",  # the user id a pinned receiver expects
                HEADER_TIMESTAMP: timestamp,
                HEADER_SIGNATURE: sign(_key(sandbox), request_id, "sandbox-user", timestamp, body),
            },
        )
        assert response.status_code == 401, response.get_json()
        assert response.get_json()["error"]["code"] == "unusable_request_id", response.get_json()
        row = _last()
        assert not row.verified and "not storable" in row.rejection_reason


def test_every_signature_header_is_kept_with_the_rejection(receiver):
    headers = {name: f"v-{name}" for name in SIGNATURE_HEADERS}
    receiver.post("/webhooks/fal?job=a%00b", data=b"{}", headers={**headers, "X-Other": "dropped"})
    row = _last()
    assert {k: row.headers.get(k) for k in SIGNATURE_HEADERS} == headers
    assert row.headers["query_job_id"] == "a\\u0000b" and "X-Other" not in row.headers
