"""Webhook delivery, signatures, JWKS and key rotation.

See docs/fal-protocol.md, "Callbacks" and "Signatures".
"""

from __future__ import annotations

import base64
import itertools
import json
import time

import pytest

from tests.plugins.sandbox import verify_fal_signature
from tests.sandbox.helpers import ECHO, closed_port_url, submit


@pytest.fixture
def client(sandbox):
    with sandbox.client() as client:
        yield client


def test_jwks_lists_one_ed25519_key_with_unpadded_x(sandbox):
    keys = sandbox.jwks()["keys"]

    assert len(keys) == 1
    key = keys[0]
    assert (key["kty"], key["crv"]) == ("OKP", "Ed25519")
    assert len(key["x"]) == 43 and "=" not in key["x"]
    assert len(base64.urlsafe_b64decode(key["x"] + "=")) == 32
    assert key["kid"]


def test_success_webhook_body_headers_and_signature(sandbox, client, webhook_sink):
    submitted = submit(client, sandbox.url, ECHO, {"prompt": "ok"}, webhook=webhook_sink.url).json()
    [hook] = webhook_sink.wait_for(1)

    expected = {
        "request_id": submitted["request_id"],
        "gateway_request_id": submitted["request_id"],
        "status": "OK",
        "payload": {"endpoint_id": ECHO, "echo": {"prompt": "ok"}},
    }
    assert hook.method == "POST" and hook.path == "/webhook"
    assert hook.json() == expected
    assert hook.body == json.dumps(expected, separators=(",", ":")).encode()  # compact
    assert hook.headers["content-type"] == "application/json"
    assert hook.headers["x-fal-webhook-request-id"] == submitted["request_id"]
    assert hook.headers["x-fal-webhook-user-id"] == "sandbox-user"
    assert abs(int(hook.headers["x-fal-webhook-timestamp"]) - time.time()) < 5
    signature = hook.headers["x-fal-webhook-signature"]
    assert len(signature) == 128 and signature == signature.lower()
    assert verify_fal_signature(hook, sandbox.jwks())

    sandbox.wait_idle()
    truth = sandbox.request(submitted["request_id"])
    assert truth["webhook_state"] == "delivered"
    [attempt] = truth["deliveries"]
    assert attempt["attempt"] == 1 and attempt["kind"] == "original"
    assert (attempt["http_status"], attempt["error"]) == (200, None)
    assert attempt["signature_valid"] is True and attempt["timestamp_stale"] is False


def test_tampered_body_does_not_verify(sandbox, client, webhook_sink):
    submit(client, sandbox.url, ECHO, {}, webhook=webhook_sink.url)
    [hook] = webhook_sink.wait_for(1)
    tampered = type(hook)(
        hook.method, hook.path, hook.headers, hook.body + b" ", hook.received_at, hook.answered
    )

    assert verify_fal_signature(hook, sandbox.jwks())
    assert not verify_fal_signature(tampered, sandbox.jwks())


def test_webhook_url_with_its_own_query_string(sandbox, client, webhook_sink):
    target = webhook_sink.url + "?tenant=a&job=b%20c"
    submitted = submit(client, sandbox.url, ECHO, {}, webhook=target).json()
    [hook] = webhook_sink.wait_for(1)

    assert hook.path == "/webhook?tenant=a&job=b%20c"
    assert sandbox.request(submitted["request_id"])["webhook_url"] == target


def test_user_id_is_configurable(sandbox, client, webhook_sink):
    sandbox.set_config(user_id="user-42")
    submit(client, sandbox.url, ECHO, {}, webhook=webhook_sink.url)
    [hook] = webhook_sink.wait_for(1)

    assert hook.headers["x-fal-webhook-user-id"] == "user-42"
    assert verify_fal_signature(hook, sandbox.jwks())


def test_non_2xx_is_retried_with_backoff_until_success(sandbox, client, webhook_sink):
    webhook_sink.respond_with(500, 404)
    submitted = submit(client, sandbox.url, ECHO, {}, webhook=webhook_sink.url).json()
    hooks = webhook_sink.wait_for(3)
    sandbox.wait_idle()

    assert [hook.answered for hook in hooks] == [500, 404, 200]
    assert all(verify_fal_signature(hook, sandbox.jwks()) for hook in hooks)
    assert len({hook.body for hook in hooks}) == 1
    gaps = [later.received_at - earlier.received_at for earlier, later in itertools.pairwise(hooks)]
    assert gaps[0] >= 0.04 and gaps[1] >= 0.09  # backoff [0.05, 0.1, ...] with clock slack
    truth = sandbox.request(submitted["request_id"])
    assert [(d["attempt"], d["http_status"]) for d in truth["deliveries"]] == [(1, 500), (2, 404), (3, 200)]
    assert truth["webhook_state"] == "delivered"


def test_delivery_gives_up_after_the_configured_attempts(sandbox, client, webhook_sink):
    sandbox.set_config(delivery_attempts=3)
    webhook_sink.respond_with(500, 500, 500, 500, 500)
    submitted = submit(client, sandbox.url, ECHO, {"x": 1}, webhook=webhook_sink.url).json()
    sandbox.wait_idle()

    assert len(webhook_sink.received) == 3
    truth = sandbox.request(submitted["request_id"])
    assert truth["webhook_state"] == "failed"
    assert [d["attempt"] for d in truth["deliveries"]] == [1, 2, 3]
    assert client.get(submitted["response_url"]).json()["echo"] == {"x": 1}


def test_connection_errors_and_timeouts_count_as_failed_attempts(sandbox, client, webhook_sink):
    sandbox.set_config(delivery_attempts=2, delivery_timeout_s=0.2)
    webhook_sink.stall_for(2.0)
    refused = submit(client, sandbox.url, ECHO, {}, webhook=closed_port_url()).json()
    slow = submit(client, sandbox.url, ECHO, {}, webhook=webhook_sink.url).json()
    sandbox.wait_idle()

    for request_id, expected_error in (
        (refused["request_id"], "ConnectError"),
        (slow["request_id"], "timeout"),
    ):
        truth = sandbox.request(request_id)
        assert truth["webhook_state"] == "failed"
        assert len(truth["deliveries"]) == 2
        for attempt in truth["deliveries"]:
            assert attempt["http_status"] is None
            assert expected_error in attempt["error"]


def test_each_attempt_gets_a_fresh_timestamp_and_signature(sandbox, client, webhook_sink):
    sandbox.set_config(delivery_backoff_s=[1.05])
    webhook_sink.respond_with(500)
    submit(client, sandbox.url, ECHO, {}, webhook=webhook_sink.url)
    first, second = webhook_sink.wait_for(2)

    assert int(second.headers["x-fal-webhook-timestamp"]) > int(first.headers["x-fal-webhook-timestamp"])
    assert first.headers["x-fal-webhook-signature"] != second.headers["x-fal-webhook-signature"]
    assert verify_fal_signature(first, sandbox.jwks()) and verify_fal_signature(second, sandbox.jwks())


def test_rotation_without_keep_old_replaces_the_key(sandbox, client, webhook_sink):
    old_jwks = sandbox.jwks()
    rotated = sandbox.rotate_keys(keep_old=False)
    new_jwks = sandbox.jwks()
    submit(client, sandbox.url, ECHO, {}, webhook=webhook_sink.url)
    [hook] = webhook_sink.wait_for(1)

    assert len(new_jwks["keys"]) == 1 and new_jwks["keys"][0]["kid"] == rotated["kid"]
    assert new_jwks["keys"][0]["x"] != old_jwks["keys"][0]["x"]
    assert verify_fal_signature(hook, new_jwks)
    assert not verify_fal_signature(hook, old_jwks)


def test_rotation_with_keep_old_lists_both_but_signs_with_new(sandbox, client, webhook_sink):
    old_jwks = sandbox.jwks()
    rotated = sandbox.rotate_keys(keep_old=True)
    both = sandbox.jwks()
    submit(client, sandbox.url, ECHO, {}, webhook=webhook_sink.url)
    [hook] = webhook_sink.wait_for(1)

    assert {key["x"] for key in old_jwks["keys"]} < {key["x"] for key in both["keys"]}
    assert len(both["keys"]) == 2
    only_new = {"keys": [key for key in both["keys"] if key["kid"] == rotated["kid"]]}
    assert verify_fal_signature(hook, both)
    assert verify_fal_signature(hook, only_new)
    assert not verify_fal_signature(hook, old_jwks)


def test_no_webhook_without_fal_webhook(sandbox, client, webhook_sink):
    submitted = submit(client, sandbox.url, ECHO, {}).json()
    sandbox.wait_idle()

    truth = sandbox.request(submitted["request_id"])
    assert truth["webhook_url"] is None and truth["deliveries"] == []


def test_invalid_webhook_url_is_rejected(sandbox, client):
    assert submit(client, sandbox.url, ECHO, {}, webhook="ftp://example.com/hook").status_code == 422
