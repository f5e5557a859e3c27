"""The webhook URL falbridge hands fal, and the HMAC token in it that proves the URL is ours
(worker/webhook_url.py). The token is recomputed here from its definition, so a change to
how it is made shows up even when making and checking change together."""

from __future__ import annotations

import base64
import hashlib
import hmac
from urllib.parse import parse_qs, urlsplit

from falbridge.worker.webhook_url import proves, webhook_url

OLD_KEY, NEW_KEY = "o" * 43, "n" * 43
JOB_ID = "0d5e1f7a-7c1b-4c5e-9a3b-1f2e3d4c5b6a"


def _expected_token(secret: str, job_id: str) -> str:
    key = hmac.new(secret.encode(), b"falbridge webhook url v1", hashlib.sha256).digest()
    digest = hmac.new(key, job_id.encode(), hashlib.sha256).digest()[:16]
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def _query(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query)


def test_the_url_names_the_job_and_carries_the_token_of_the_signing_key(monkeypatch):
    monkeypatch.setenv("PUBLIC_BASE_URL", "https://bridge.example/")
    monkeypatch.setenv("FALBRIDGE_SECRET_KEY", f"{NEW_KEY},{OLD_KEY}")
    url = webhook_url(JOB_ID)
    assert url.startswith("https://bridge.example/webhooks/fal?")
    assert _query(url) == {"job": [JOB_ID], "token": [_expected_token(NEW_KEY, JOB_ID)]}
    assert len(_query(url)["token"][0]) == 22  # 16 bytes, unpadded base64url


def test_a_token_proves_its_own_job_under_any_configured_key(monkeypatch):
    monkeypatch.setenv("FALBRIDGE_SECRET_KEY", f"{NEW_KEY},{OLD_KEY}")
    for secret in (NEW_KEY, OLD_KEY):
        assert proves(JOB_ID, _expected_token(secret, JOB_ID))
    assert not proves(JOB_ID, _expected_token("s" * 43, JOB_ID))
    assert not proves("1d5e1f7a-7c1b-4c5e-9a3b-1f2e3d4c5b6a", _expected_token(NEW_KEY, JOB_ID))


def test_a_missing_or_mangled_token_proves_nothing(monkeypatch):
    monkeypatch.setenv("FALBRIDGE_SECRET_KEY", OLD_KEY)
    token = _expected_token(OLD_KEY, JOB_ID)
    assert proves(JOB_ID, token)
    for presented in (None, "", token[:-1], token + "A", token + "=", "\udc80" + token, "é" + token):
        assert not proves(JOB_ID, presented), presented


def test_the_job_id_may_be_a_uuid_or_its_text(monkeypatch):
    import uuid

    monkeypatch.setenv("FALBRIDGE_SECRET_KEY", OLD_KEY)
    token = _expected_token(OLD_KEY, JOB_ID)
    assert proves(uuid.UUID(JOB_ID), token)
    assert _query(webhook_url(uuid.UUID(JOB_ID)))["token"] == [token]
