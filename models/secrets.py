"""Subscription signing secrets: made here, shown once as `whsec_<base64>` (Standard
Webhooks' form), stored only encrypted.

The encryption key is derived from FALBRIDGE_SECRET_KEY (falbridge.secret_key, purpose
"subscription-secret"); AES-256-GCM with a random nonce, the subscription's id as
associated data, so a ciphertext copied onto another row does not decrypt. During a
rotation of FALBRIDGE_SECRET_KEY every configured key is tried; the first encrypts.
"""

from __future__ import annotations

import base64
import os
import secrets
import uuid
from datetime import datetime

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from falbridge.config import Config
from falbridge.secret_key import derived_keys

PREFIX = "whsec_"
SECRET_BYTES = 32
_NONCE_BYTES = 12
_PURPOSE = "subscription-secret"


class SecretUnreadable(ValueError):
    """No configured FALBRIDGE_SECRET_KEY decrypts a stored secret."""


def new_secret() -> str:
    return PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def secret_bytes(secret: str) -> bytes:
    """The HMAC key of a `whsec_` secret: its base64 part, decoded."""
    return base64.b64decode(secret.removeprefix(PREFIX))


def encrypt(cfg: Config, subscription_id: uuid.UUID, secret: str) -> bytes:
    nonce = os.urandom(_NONCE_BYTES)
    key = derived_keys(cfg, _PURPOSE)[0]
    return nonce + AESGCM(key).encrypt(nonce, secret.encode(), subscription_id.bytes)


def decrypt(cfg: Config, subscription_id: uuid.UUID, stored: bytes) -> str:
    nonce, sealed = stored[:_NONCE_BYTES], stored[_NONCE_BYTES:]
    for key in derived_keys(cfg, _PURPOSE):
        try:
            return AESGCM(key).decrypt(nonce, sealed, subscription_id.bytes).decode()
        except InvalidTag:
            continue
    raise SecretUnreadable(f"no FALBRIDGE_SECRET_KEY decrypts the secret of subscription {subscription_id}")


def signing(
    cfg: Config,
    sealed_as: uuid.UUID,
    current: bytes,
    previous: bytes | None,
    until: datetime | None,
    now: datetime,
) -> list[str]:
    """The secrets that sign now: the current one, and the previous one in its rotation's
    overlap (until `until`)."""
    found = [decrypt(cfg, sealed_as, current)]
    if previous is not None and until is not None and until > now:
        found.append(decrypt(cfg, sealed_as, previous))
    return found
