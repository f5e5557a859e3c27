"""Our signatures, checked by the official `standardwebhooks` package (a verifier nobody
on this team wrote), and the secrets' shape and storage."""

from __future__ import annotations

import base64
import time
import uuid

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from falbridge.config import Config
from falbridge.models import secrets
from falbridge.worker.notify import sign
from tests.plugins.pipeline import TEST_SECRET_KEY

BODY = b'{"type":"job.completed","timestamp":"2026-11-30T00:00:00+00:00","data":{"id":"x"}}'


def _signed(*keys: str) -> dict[str, str]:
    return sign.headers("evt_42", int(time.time()), BODY, keys)


def test_a_new_secret_is_whsec_and_32_random_bytes():
    secret = secrets.new_secret()
    assert secret.startswith("whsec_") and len(base64.b64decode(secret.removeprefix("whsec_"))) == 32
    assert secret != secrets.new_secret()


def test_standardwebhooks_verifies_our_signature():
    secret = secrets.new_secret()
    assert Webhook(secret).verify(BODY, _signed(secret)) is not None


def test_standardwebhooks_refuses_a_tampered_body_or_another_secret():
    secret = secrets.new_secret()
    headers = _signed(secret)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(BODY.replace(b"completed", b"failed"), headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(secrets.new_secret()).verify(BODY, headers)


def test_during_a_rotation_both_secrets_sign_and_either_verifies():
    old, new = secrets.new_secret(), secrets.new_secret()
    headers = _signed(new, old)
    assert len(headers["webhook-signature"].split(" ")) == 2
    assert Webhook(new).verify(BODY, headers) is not None
    assert Webhook(old).verify(BODY, headers) is not None


def test_nothing_we_send_looks_like_fals_own_headers():
    headers = _signed(secrets.new_secret())
    assert not [name for name in headers if name.lower().startswith("x-fal")]
    assert {"webhook-id", "webhook-timestamp", "webhook-signature"} <= set(headers)


def test_stored_secrets_are_encrypted_and_bound_to_their_subscription():
    cfg = Config.from_environ({"FALBRIDGE_SECRET_KEY": TEST_SECRET_KEY})
    secret, owner = secrets.new_secret(), uuid.uuid4()
    stored = secrets.encrypt(cfg, owner, secret)
    assert secret.encode() not in stored and secrets.secret_bytes(secret) not in stored
    assert secrets.decrypt(cfg, owner, stored) == secret
    with pytest.raises(secrets.SecretUnreadable):
        secrets.decrypt(cfg, uuid.uuid4(), stored)  # copied onto another row


def test_a_rotated_secret_key_still_decrypts_what_the_old_one_encrypted():
    old = Config.from_environ({"FALBRIDGE_SECRET_KEY": TEST_SECRET_KEY})
    rotated = Config.from_environ({"FALBRIDGE_SECRET_KEY": "n" * 40 + "," + TEST_SECRET_KEY})
    owner, secret = uuid.uuid4(), secrets.new_secret()
    assert secrets.decrypt(rotated, owner, secrets.encrypt(old, owner, secret)) == secret
    with pytest.raises(secrets.SecretUnreadable):
        secrets.decrypt(
            Config.from_environ({"FALBRIDGE_SECRET_KEY": "n" * 40}),
            owner,
            secrets.encrypt(old, owner, secret),
        )
