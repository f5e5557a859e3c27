"""Signing an outgoing webhook the Standard Webhooks way (standardwebhooks.com):

    webhook-id:        the event id, the same on every retry (subscribers dedupe on it)
    webhook-timestamp: unix seconds of this attempt
    webhook-signature: v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">

keyed with the base64-decoded part of a `whsec_` secret; during a rotation's overlap one
signature per secret, space-separated, so a subscriber with either secret verifies. No
header resembles fal's own (x-fal-*), so nothing we send can pass for fal's callback.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence

from falbridge.models.secrets import secret_bytes

USER_AGENT = "falbridge-webhooks/1"


def signature(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_bytes(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def headers(message_id: str, timestamp: int, body: bytes, secrets: Sequence[str]) -> dict[str, str]:
    return {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(signature(s, message_id, timestamp, body) for s in secrets),
    }
