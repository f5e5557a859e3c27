"""Ed25519 webhook signing keys, the JWKS document and the signature format of §3."""

from __future__ import annotations

import base64
import hashlib
import threading
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat


def b64url_nopad(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@dataclass(frozen=True)
class SigningKey:
    kid: str
    private: Ed25519PrivateKey
    public_raw: bytes

    @classmethod
    def generate(cls) -> SigningKey:
        private = Ed25519PrivateKey.generate()
        public_raw = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        return cls(hashlib.sha256(public_raw).hexdigest()[:16], private, public_raw)

    def jwk(self) -> dict[str, str]:
        return {"kty": "OKP", "crv": "Ed25519", "x": b64url_nopad(self.public_raw), "kid": self.kid}


class KeyRing:
    """The newest key signs; older keys stay published only when a rotation keeps them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._keys = [SigningKey.generate()]

    @property
    def signing_key(self) -> SigningKey:
        return self._keys[-1]

    def rotate(self, keep_old: bool) -> SigningKey:
        fresh = SigningKey.generate()
        with self._lock:
            self._keys = [*self._keys, fresh] if keep_old else [fresh]
        return fresh

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        keys = self._keys
        return {"keys": [key.jwk() for key in reversed(keys)]}


def signed_message(request_id: str, user_id: str, timestamp: str, body: bytes) -> bytes:
    digest = hashlib.sha256(body).hexdigest()
    return f"{request_id}\n{user_id}\n{timestamp}\n{digest}".encode()


def sign(key: SigningKey, request_id: str, user_id: str, timestamp: str, body: bytes) -> str:
    return key.private.sign(signed_message(request_id, user_id, timestamp, body)).hex()


def corrupt(signature_hex: str) -> str:
    """Flip one bit: still 128 hex chars, so only the cryptographic check can catch it."""
    raw = bytearray(bytes.fromhex(signature_hex))
    raw[0] ^= 0x01
    return raw.hex()
