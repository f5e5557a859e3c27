"""Every way a callback can fail verification, signed with the sandbox's real Ed25519 key
and sent to the real receiver over HTTP. Each rejection is recorded with its reason and
changes nothing."""

from __future__ import annotations

import json
import math
import time

import httpx
import pytest
from sqlalchemy import select

from falbridge.models.db import transaction
from falbridge.models.jobs import create_job
from falbridge.models.tables import Job, WebhookDelivery
from falbridge.sandbox.signing import sign
from falbridge.webhooks.app import create_app
from falbridge.webhooks.receive.jwks import JwksCache, JwksUnavailable, parse_jwks
from falbridge.webhooks.receive.verify import (
    VerificationError,
    verify,
)
from falbridge.worker.webhook_url import webhook_url
from tests.plugins.db import config_with
from tests.plugins.waiting import poll_until

USER = "sandbox-user"


def signed_headers(
    sandbox_server,
    body: bytes,
    *,
    request_id: str,
    user_id: str = USER,
    timestamp: str | None = None,
    key=None,
) -> dict[str, str]:
    key = key or sandbox_server.core.keys.signing_key
    timestamp = timestamp or str(int(time.time()))
    return {
        "X-Fal-Webhook-Request-Id": request_id,
        "X-Fal-Webhook-User-Id": user_id,
        "X-Fal-Webhook-Timestamp": timestamp,
        "X-Fal-Webhook-Signature": sign(key, request_id, user_id, timestamp, body),
        "Content-Type": "application/json",
    }


def _body(request_id: str) -> bytes:
    return json.dumps({"request_id": request_id, "status": "OK", "payload": {"forged": True}}).encode()


def _with(headers, **changes):
    out = dict(headers)
    for name, value in changes.items():
        header = "X-Fal-Webhook-" + name.replace("_", "-").title().replace("Id", "Id")
        if value is None:
            out.pop(header)
        else:
            out[header] = value
    return out


def _past(seconds: int) -> str:
    return str(math.floor(time.time()) - seconds)


def _future(seconds: int) -> str:
    # ceil: even a send that straddles a second boundary stays more than 300 s ahead.
    return str(math.ceil(time.time()) + seconds)


# (case, how to build (headers, body) from a valid pair, expected status, reason fragment)
CASES = [
    ("missing request id", lambda h, b, sv: (_with(h, Request_Id=None), b), 401, "missing header"),
    ("missing user id", lambda h, b, sv: (_with(h, User_Id=None), b), 401, "missing header"),
    ("missing timestamp", lambda h, b, sv: (_with(h, Timestamp=None), b), 401, "missing header"),
    ("missing signature", lambda h, b, sv: (_with(h, Signature=None), b), 401, "missing header"),
    ("empty signature", lambda h, b, sv: (_with(h, Signature=""), b), 401, "missing header"),
    ("non-hex signature", lambda h, b, sv: (_with(h, Signature="zz" * 64), b), 401, "not hex"),
    (
        "short signature",
        lambda h, b, sv: (_with(h, Signature=h["X-Fal-Webhook-Signature"][:124]), b),
        401,
        "wrong length",
    ),
    ("tampered body", lambda h, b, sv: (h, b.replace(b"true", b"false")), 401, "does not verify"),
    ("tampered user id", lambda h, b, sv: (_with(h, User_Id="someone-else"), b), 401, "does not verify"),
    (
        "tampered timestamp",
        lambda h, b, sv: (_with(h, Timestamp=str(int(h["X-Fal-Webhook-Timestamp"]) - 1)), b),
        401,
        "does not verify",
    ),
    ("non-numeric timestamp", lambda h, b, sv: (_with(h, Timestamp="12e5"), b), 401, "not an integer"),
    (
        "301 s in the past",
        lambda h, b, sv: (signed_headers(sv, b, request_id="req-sig", timestamp=_past(301)), b),
        401,
        "outside tolerance",
    ),
    (
        "301 s in the future",
        lambda h, b, sv: (signed_headers(sv, b, request_id="req-sig", timestamp=_future(301)), b),
        401,
        "outside tolerance",
    ),
    ("tampered request id", lambda h, b, sv: (_with(h, Request_Id="req-other"), b), 401, "does not verify"),
    (
        "header id differs from body id",
        lambda h, b, sv: (signed_headers(sv, _body("req-other"), request_id="req-sig"), _body("req-other")),
        401,
        "does not match",
    ),
]


@pytest.mark.parametrize("case,build,status,reason", CASES, ids=[c[0] for c in CASES])
def test_rejections_are_recorded_and_change_nothing(pipeline, sandbox_server, case, build, status, reason):
    with transaction() as s:
        job, _ = create_job(s, "fal-ai/some/model", {})
        job.request_id, job.status = "req-sig", "submitted"
    body = _body("req-sig")
    headers, sent_body = build(
        signed_headers(sandbox_server, body, request_id="req-sig"), body, sandbox_server
    )
    response = httpx.post(
        f"{pipeline.receiver_url}/webhooks/fal?job={job.id}", content=sent_body, headers=headers
    )
    assert response.status_code == status
    assert reason in response.json()["error"]["message"]
    with transaction() as s:
        [row] = s.scalars(select(WebhookDelivery)).all()
        assert not row.verified and reason in row.rejection_reason
        # Refused unread when a signature header is missing; else its first 4 KiB are kept.
        assert row.body == (b"" if row.rejected_as == "missing_headers" else sent_body[:4096])
        assert s.get(Job, job.id).status == "submitted"


def _the_delivery_once_processed(timeout: float = 10.0) -> WebhookDelivery:
    def the_delivery() -> WebhookDelivery:
        with transaction() as s:
            return s.scalars(select(WebhookDelivery)).one()

    return poll_until(the_delivery, lambda row: row.processed_at, timeout)


def test_the_valid_pair_is_accepted_and_applied(pipeline, sandbox_server):
    with transaction() as s:
        job, _ = create_job(s, "fal-ai/some/model", {})
        job.request_id, job.status = "req-sig", "submitted"
    body = _body("req-sig")
    response = httpx.post(
        f"{pipeline.receiver_url}/webhooks/fal?job={job.id}",
        content=body,
        headers=signed_headers(sandbox_server, body, request_id="req-sig"),
    )
    assert response.status_code == 200
    [job] = pipeline.wait_terminal(job.id)
    assert job.result == {"forged": True}


def test_a_request_we_never_submitted_is_recorded_and_ignored(pipeline, sandbox_server):
    with transaction() as s:
        job, _ = create_job(s, "fal-ai/some/model", {})
        job.request_id, job.status = "req-ours", "submitted"
    body = _body("req-stranger")
    response = httpx.post(
        f"{pipeline.receiver_url}/webhooks/fal",
        content=body,
        headers=signed_headers(sandbox_server, body, request_id="req-stranger"),
    )
    assert response.status_code == 200  # genuinely from fal: stop its retries
    row = _the_delivery_once_processed()
    assert row.verified and row.outcome == "unknown_job" and row.job_id is None
    with transaction() as s:
        assert s.get(Job, job.id).status == "submitted"


@pytest.mark.parametrize("proof", ["our URL, token and all", "the job id alone"])
def test_a_signed_callback_naming_our_job_but_another_request_is_not_applied(pipeline, sandbox_server, proof):
    with transaction() as s:
        job, _ = create_job(s, "fal-ai/some/model", {})
        job.request_id, job.status = "req-ours", "submitted"
    body = _body("req-attacker")  # someone else's fal job pointed at our URL with our job id
    url = (
        webhook_url(job.id)
        if proof == "our URL, token and all"
        else f"{pipeline.receiver_url}/webhooks/fal?job={job.id}"
    )
    httpx.post(url, content=body, headers=signed_headers(sandbox_server, body, request_id="req-attacker"))
    row = _the_delivery_once_processed()
    # With our token it finds the job, whose request id differs; without, it finds none.
    assert row.outcome == ("request_id_mismatch" if proof == "our URL, token and all" else "unknown_job")
    with transaction() as s:
        assert s.get(Job, job.id).result is None


def test_foreign_user_id_is_rejected_when_pinned(db_url, redis_url, monkeypatch, sandbox_server):
    monkeypatch.setenv("REDIS_URL", redis_url)
    app = create_app(config_with(FAL_JWKS_URL=sandbox_server.jwks_url, FAL_WEBHOOK_USER_ID="our-fal-user"))
    body = _body("req-x")
    response = app.test_client().post(
        "/webhooks/fal", data=body, headers=signed_headers(sandbox_server, body, request_id="req-x")
    )
    assert response.status_code == 401 and "not ours" in response.get_json()["error"]["message"]
    with transaction() as s:
        assert s.scalars(select(WebhookDelivery.rejection_reason)).one() == "webhook user id is not ours"


# -- the JWKS cache ------------------------------------------------------------


def _verify(cache, sandbox_server, request_id="r1"):
    body = _body(request_id)
    headers = signed_headers(sandbox_server, body, request_id=request_id)
    return verify(headers, body, cache)


def test_rotation_is_picked_up_by_one_refetch(sandbox):
    server = sandbox.server
    cache = JwksCache(sandbox.jwks_url, refetch_min_age_s=0)
    _verify(cache, server)
    assert cache.fetches == 1
    sandbox.rotate_keys(keep_old=False)
    _verify(cache, server)  # unknown key: one refetch, then it verifies
    assert cache.fetches == 2
    _verify(cache, server)
    assert cache.fetches == 2


def test_rotation_refetch_is_rate_limited(sandbox):
    cache = JwksCache(sandbox.jwks_url, refetch_min_age_s=3600)
    _verify(cache, sandbox.server)
    sandbox.rotate_keys(keep_old=False)
    with pytest.raises(VerificationError):
        _verify(cache, sandbox.server)  # a flood of bad signatures can't make us hammer fal
    assert cache.fetches == 1


def test_unreachable_jwks_uses_valid_cached_keys_and_fails_closed_without(sandbox):
    cache = JwksCache(sandbox.jwks_url)
    _verify(cache, sandbox.server)
    cache.url = "http://127.0.0.1:9/.well-known/jwks.json"
    _verify(cache, sandbox.server)  # within the TTL, the cached key still verifies
    empty = JwksCache("http://127.0.0.1:9/.well-known/jwks.json")
    with pytest.raises(JwksUnavailable):
        _verify(empty, sandbox.server)
    expired = JwksCache(sandbox.jwks_url, ttl_s=0)
    _verify(expired, sandbox.server)
    expired.url = "http://127.0.0.1:9/.well-known/jwks.json"
    with pytest.raises(JwksUnavailable):  # past the TTL an unrefreshable key is dropped
        _verify(expired, sandbox.server)


def test_receiver_answers_503_when_no_key_can_be_had(db_url, redis_url, monkeypatch, sandbox_server):
    monkeypatch.setenv("REDIS_URL", redis_url)
    app = create_app(config_with(FAL_JWKS_URL="http://127.0.0.1:9/.well-known/jwks.json"))
    body = _body("req-y")
    response = app.test_client().post(
        "/webhooks/fal", data=body, headers=signed_headers(sandbox_server, body, request_id="req-y")
    )
    assert response.status_code == 503  # fal retries later; nothing is accepted unverified
    assert response.get_json()["error"]["code"] == "jwks_unavailable"


@pytest.mark.parametrize("pad", ["", "="])
def test_jwks_x_padded_or_not(sandbox, pad):
    jwk = sandbox.jwks()["keys"][0]
    assert len(jwk["x"]) == 43
    [key] = parse_jwks({"keys": [dict(jwk, x=jwk["x"] + pad)]})
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    assert key.public_bytes(Encoding.Raw, PublicFormat.Raw) == sandbox.server.core.keys.signing_key.public_raw


def test_malformed_jwks_members_are_skipped_not_fatal():
    good = {"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}
    keys = parse_jwks({"keys": [{"x": 5}, {"kty": "RSA", "x": good["x"]}, {"x": "!!!"}, {"x": "AAAA"}, good]})
    assert len(keys) == 1
    assert parse_jwks("nope") == [] and parse_jwks({"keys": "nope"}) == []


@pytest.mark.parametrize("skew,accepted", [(300, True), (301, False), (-300, True), (-301, False)])
def test_a_timestamp_exactly_at_the_tolerance_is_accepted_and_one_second_past_refused(
    sandbox, skew, accepted
):
    timestamp = 1_700_000_000
    body = _body("req-t")
    headers = signed_headers(sandbox.server, body, request_id="req-t", timestamp=str(timestamp))
    cache = JwksCache(sandbox.jwks_url)
    now = timestamp + skew  # positive: the timestamp is that far in the past
    if accepted:
        assert verify(headers, body, cache, tolerance_s=300, now=now).timestamp == timestamp
    else:
        with pytest.raises(VerificationError, match="outside tolerance"):
            verify(headers, body, cache, tolerance_s=300, now=now)
