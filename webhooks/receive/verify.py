"""Verify fal's webhook signatures (docs/fal-protocol.md, "Signatures"): Ed25519 over JWKS keys.

    message = request_id \\n user_id \\n timestamp \\n sha256hex(raw body)

The keys come from the JwksCache (jwks.py): a key that does not verify triggers at most one
refetch, for a rotation.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from falbridge.webhooks.receive.jwks import JwksCache

HEADER_REQUEST_ID = "X-Fal-Webhook-Request-Id"
HEADER_USER_ID = "X-Fal-Webhook-User-Id"
HEADER_TIMESTAMP = "X-Fal-Webhook-Timestamp"
HEADER_SIGNATURE = "X-Fal-Webhook-Signature"
SIGNATURE_HEADERS = (HEADER_REQUEST_ID, HEADER_USER_ID, HEADER_TIMESTAMP, HEADER_SIGNATURE)


class VerificationError(Exception):
    """The delivery is not authentic (or not ours); `reason` is recorded and returned, and
    `code` (short, one of a few) is what rejections are counted by."""

    def __init__(self, code: str, reason: str):
        super().__init__(reason)
        self.code = code
        self.reason = reason


class HeaderLookup(Protocol):
    """What `verify` reads headers from: a dict, or werkzeug's Headers (not a Mapping)."""

    def get(self, key: str, /) -> str | None: ...


@dataclass(frozen=True)
class VerifiedHeaders:
    request_id: str
    user_id: str
    timestamp: int


def verify(
    headers: HeaderLookup,
    body: bytes,
    jwks: JwksCache,
    *,
    tolerance_s: int = 300,
    expected_user_id: str | None = None,
    now: float | None = None,
) -> VerifiedHeaders:
    values = _signature_headers(headers)
    request_id, user_id = values[HEADER_REQUEST_ID], values[HEADER_USER_ID]
    raw_timestamp = values[HEADER_TIMESTAMP]
    timestamp = _timestamp_within(raw_timestamp, tolerance_s, time.time() if now is None else now)
    signature = _signature_bytes(values[HEADER_SIGNATURE])
    # surrogatepass: a header str can hold a lone surrogate (never from the wire, which is
    # latin-1); it must fail as a bad signature, not as a UnicodeEncodeError.
    message = "\n".join([request_id, user_id, raw_timestamp, hashlib.sha256(body).hexdigest()]).encode(
        "utf-8", "surrogatepass"
    )
    keys = jwks.keys()
    if not _any_key_verifies(keys, signature, message) and not (
        jwks.refresh_for_rotation(keys) and _any_key_verifies(jwks.keys(), signature, message)
    ):
        raise VerificationError("bad_signature", "signature does not verify with any fal key")
    # Checked after the signature: fal's keys are shared by all its customers, so a valid
    # signature proves fal sent it, not that it is ours.
    if expected_user_id is not None and user_id != expected_user_id:
        raise VerificationError("foreign_user", "webhook user id is not ours")
    return VerifiedHeaders(request_id, user_id, timestamp)


def _signature_headers(headers: HeaderLookup) -> dict[str, str]:
    values = {name: (headers.get(name) or "").strip() for name in SIGNATURE_HEADERS}
    missing = [name for name, value in values.items() if not value]
    if missing:
        raise VerificationError("missing_headers", f"missing header(s): {', '.join(missing)}")
    return values


def _timestamp_within(raw: str, tolerance_s: int, now: float) -> int:
    if not raw.isascii() or not raw.isdigit():
        raise VerificationError("bad_timestamp", "timestamp is not an integer")
    if len(raw) > 12:
        # Beyond any plausible Unix time; and a few hundred digits would overflow the float
        # arithmetic below (OverflowError), a few thousand int() itself (ValueError): a 500.
        raise VerificationError("stale_timestamp", "timestamp outside tolerance (not a plausible Unix time)")
    timestamp = int(raw)
    skew = now - timestamp
    if abs(skew) > tolerance_s:
        raise VerificationError(
            "stale_timestamp", f"timestamp outside tolerance ({int(skew)} s off, limit {tolerance_s} s)"
        )
    return timestamp


def _signature_bytes(raw: str) -> bytes:
    try:
        signature = bytes.fromhex(raw)
    except ValueError:
        raise VerificationError("bad_signature", "signature is not hex") from None
    if len(signature) != 64:
        raise VerificationError("bad_signature", "signature has the wrong length")
    return signature


def _any_key_verifies(keys: list[Ed25519PublicKey], signature: bytes, message: bytes) -> bool:
    for key in keys:
        try:
            key.verify(signature, message)
            return True
        except InvalidSignature:
            continue
    return False
