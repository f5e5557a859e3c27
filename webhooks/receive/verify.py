"""Verify fal's webhook signatures (docs/fal-protocol.md, "Signatures"): Ed25519 over JWKS keys.

    message = request_id \\n user_id \\n timestamp \\n sha256hex(raw body)

The JWKS is fetched lazily, cached for at most `ttl_s` (fal: never longer than 24 h),
and refetched once when no cached key verifies and the cache is older than
`refetch_min_age_s` (a rotation). Refetches are serialised so a burst of callbacks
signed with a new key costs one fetch, not one per request.
"""

from __future__ import annotations

import base64
import hashlib
import threading
import time
from dataclasses import dataclass
from typing import Protocol

import httpx
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

HEADER_REQUEST_ID = "X-Fal-Webhook-Request-Id"
HEADER_USER_ID = "X-Fal-Webhook-User-Id"
HEADER_TIMESTAMP = "X-Fal-Webhook-Timestamp"
HEADER_SIGNATURE = "X-Fal-Webhook-Signature"
SIGNATURE_HEADERS = (HEADER_REQUEST_ID, HEADER_USER_ID, HEADER_TIMESTAMP, HEADER_SIGNATURE)


class VerificationError(Exception):
    """The delivery is not authentic (or not ours); `reason` is recorded and returned."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class JwksUnavailable(Exception):
    """No usable key: the JWKS could not be fetched and nothing valid is cached.
    Fail closed, and answer 5xx so fal delivers again later."""


def decode_jwk_x(x: str) -> bytes:
    # JWK `x` is unpadded base64url; Python's decoder insists on padding (docs/fal-protocol.md, "Signatures").
    return base64.urlsafe_b64decode(x + "=" * (-len(x) % 4))


def parse_jwks(document: object) -> list[Ed25519PublicKey]:
    keys = []
    for jwk in (document or {}).get("keys", []) if isinstance(document, dict) else []:
        if not isinstance(jwk, dict) or not isinstance(jwk.get("x"), str):
            continue
        if jwk.get("kty", "OKP") != "OKP" or jwk.get("crv", "Ed25519") != "Ed25519":
            continue
        try:
            keys.append(Ed25519PublicKey.from_public_bytes(decode_jwk_x(jwk["x"])))
        except ValueError:
            continue  # one malformed key must not hide the good ones
    return keys


class JwksCache:
    def __init__(
        self,
        url: str,
        *,
        ttl_s: float = 86400,
        refetch_min_age_s: float = 60,
        http: httpx.Client | None = None,
    ):
        self.url = url
        self.ttl_s = ttl_s
        self.refetch_min_age_s = refetch_min_age_s
        self._http = http or httpx.Client(timeout=httpx.Timeout(10.0, connect=5.0))
        self._keys: list[Ed25519PublicKey] = []
        self._fetched_at: float | None = None
        self._lock = threading.Lock()
        self.fetches = 0  # JWKS requests made, for operators and tests

    def _age(self) -> float:
        return float("inf") if self._fetched_at is None else time.monotonic() - self._fetched_at

    def keys(self) -> list[Ed25519PublicKey]:
        if self._age() > self.ttl_s:
            self._refresh(stale_after=self.ttl_s)
        if not self._keys:
            raise JwksUnavailable(f"no verification keys available from {self.url}")
        return self._keys

    def refresh_for_rotation(self) -> bool:
        """Refetch if the cache is old enough; True if a fetch happened."""
        if self._age() < self.refetch_min_age_s:
            return False
        return self._refresh(stale_after=self.refetch_min_age_s)

    def _refresh(self, stale_after: float) -> bool:
        with self._lock:
            if self._age() < stale_after:
                return False  # another thread refreshed while we waited
            self.fetches += 1
            try:
                response = self._http.get(self.url)
                response.raise_for_status()
                keys = parse_jwks(response.json())
            except (httpx.HTTPError, ValueError):
                keys = []
            if keys:
                self._keys, self._fetched_at = keys, time.monotonic()
                return True
            if self._fetched_at is not None and self._age() > self.ttl_s:
                self._keys = []  # past fal's 24 h limit a cached key may no longer be trusted
            return False


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
    if not _any_key_verifies(jwks.keys(), signature, message) and not (
        jwks.refresh_for_rotation() and _any_key_verifies(jwks.keys(), signature, message)
    ):
        raise VerificationError("signature does not verify with any fal key")
    # Checked after the signature: fal's keys are shared by all its customers, so a valid
    # signature proves fal sent it, not that it is ours.
    if expected_user_id is not None and user_id != expected_user_id:
        raise VerificationError("webhook user id is not ours")
    return VerifiedHeaders(request_id, user_id, timestamp)


def _signature_headers(headers: HeaderLookup) -> dict[str, str]:
    values = {name: (headers.get(name) or "").strip() for name in SIGNATURE_HEADERS}
    missing = [name for name, value in values.items() if not value]
    if missing:
        raise VerificationError(f"missing header(s): {', '.join(missing)}")
    return values


def _timestamp_within(raw: str, tolerance_s: int, now: float) -> int:
    if not raw.isascii() or not raw.isdigit():
        raise VerificationError("timestamp is not an integer")
    if len(raw) > 12:
        # Beyond any plausible Unix time; and a few hundred digits would overflow the float
        # arithmetic below (OverflowError), a few thousand int() itself (ValueError): a 500.
        raise VerificationError("timestamp outside tolerance (not a plausible Unix time)")
    timestamp = int(raw)
    skew = now - timestamp
    if abs(skew) > tolerance_s:
        raise VerificationError(f"timestamp outside tolerance ({int(skew)} s off, limit {tolerance_s} s)")
    return timestamp


def _signature_bytes(raw: str) -> bytes:
    try:
        signature = bytes.fromhex(raw)
    except ValueError:
        raise VerificationError("signature is not hex") from None
    if len(signature) != 64:
        raise VerificationError("signature has the wrong length")
    return signature


def _any_key_verifies(keys: list[Ed25519PublicKey], signature: bytes, message: bytes) -> bool:
    for key in keys:
        try:
            key.verify(signature, message)
            return True
        except InvalidSignature:
            continue
    return False
