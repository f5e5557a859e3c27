"""The deployment's secret key (FALBRIDGE_SECRET_KEY) and the keys derived from it.

Each use derives its own key (HMAC of a purpose string), so a value made for one purpose
is never valid for another. Several keys may be set during a rotation: the first makes new
values, every one is accepted, so what was handed out under the old key (webhook URLs fal
holds) keeps verifying until it is removed.

On the embedded default, with no key set, one is generated on first use and kept in the var
dir (readable by its owner only), so every process on the machine shares it; a deployment
must set it (`Config.require`).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import tempfile
from pathlib import Path

from falbridge.config import Config, ConfigError, split_tokens

GENERATED_FILE = "secret_key"


def derived_keys(cfg: Config, purpose: str) -> tuple[bytes, ...]:
    """The keys for `purpose`, one per configured key, the signing one first."""
    return tuple(hmac.new(key, purpose.encode(), hashlib.sha256).digest() for key in _keys(cfg))


def _keys(cfg: Config) -> list[bytes]:
    if cfg.secret.key is not None:
        return [key.encode() for key in split_tokens(cfg.secret.key)]
    if not cfg.embedded:
        raise ConfigError("FALBRIDGE_SECRET_KEY: required outside the embedded default (docs/deployment.md)")
    return [_generated(cfg.database.resolved_var_dir() / GENERATED_FILE)]


def _generated(path: Path) -> bytes:
    """The embedded default's key: made once by whichever process comes first, then read.
    Written aside and linked into place, so no process ever reads a half-written key."""
    if not path.exists():
        descriptor, draft = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)  # mode 0600
        with os.fdopen(descriptor, "w") as out:
            out.write(secrets.token_urlsafe(32))
        try:
            os.link(draft, path)
        except FileExistsError:
            pass  # another process won; its key is the one
        finally:
            os.unlink(draft)
    return path.read_text().strip().encode()
