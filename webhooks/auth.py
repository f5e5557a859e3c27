"""Bearer-token authentication for every /api route.

Tokens come from FALBRIDGE_API_TOKENS (comma-separated, so a new token can be rolled
out before the old one is removed). Only their SHA-256 digests are kept: the app never
holds a token in a form a crash dump, a repr or a log line could show. A presented token
is hashed too and compared with `hmac.compare_digest` against every configured digest,
so neither the comparison nor the token lengths leak through timing.

With no token configured the API refuses to serve (503) rather than run open; only
FALBRIDGE_API_AUTH=off, which the embedded demo sets, turns authentication off.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from falbridge.webhooks.errors import ApiError

TOKENS_ENV = "FALBRIDGE_API_TOKENS"
MODE_ENV = "FALBRIDGE_API_AUTH"
# Long enough that guessing is hopeless; `secrets.token_urlsafe(32)` gives 43 characters.
MIN_TOKEN_LENGTH = 16
# What RFC 6750's b64token allows: nothing that needs quoting or could split a header.
_TOKEN_SHAPE = re.compile(r"[A-Za-z0-9._~+/=-]+")
_CHALLENGE = 'Bearer realm="falbridge"'

NOT_CONFIGURED = f"API authentication is not configured: set {TOKENS_ENV}"
OFF_WARNING = (
    f"API authentication is OFF ({MODE_ENV}=off): every /api route is open to anyone "
    "who can reach this port. Only the embedded demo may run like this."
)


class AuthConfigError(ValueError):
    """The token settings are unusable; raised at start so a typo can't open the API."""


@dataclass(frozen=True, repr=False)
class ApiAuth:
    digests: tuple[bytes, ...] = ()
    enabled: bool = True

    def __repr__(self) -> str:  # never the digests, even though they are not the tokens
        return f"ApiAuth(enabled={self.enabled}, tokens={len(self.digests)})"

    @property
    def configured(self) -> bool:
        return not self.enabled or bool(self.digests)

    @classmethod
    def from_env(
        cls, env: Mapping[str, str] | None = None, *, tokens: str | None = None, mode: str | None = None
    ) -> ApiAuth:
        env = os.environ if env is None else env
        mode = (env.get(MODE_ENV, "") if mode is None else mode).strip().lower()
        if mode not in ("", "on", "off"):
            raise AuthConfigError(f"{MODE_ENV} must be 'on' or 'off', not {mode!r}")
        if mode == "off":
            return cls(enabled=False)
        raw = env.get(TOKENS_ENV, "") if tokens is None else tokens
        return cls(digests=tuple(_digest(t) for t in _parse_tokens(raw)))

    def check(self, authorization: str | None) -> None:
        """Raise ApiError (401 or 503) unless `authorization` carries a configured token."""
        if not self.enabled:
            return
        if not self.digests:
            raise ApiError(503, "auth_not_configured", NOT_CONFIGURED)
        scheme, _, token = (authorization or "").strip().partition(" ")
        if not token or scheme.lower() != "bearer":
            raise ApiError(
                401,
                "unauthorized",
                "missing bearer token: send 'Authorization: Bearer <token>'",
                headers={"WWW-Authenticate": _CHALLENGE},
            )
        presented = _digest(token.strip())
        matched = False
        for digest in self.digests:  # no early exit: every request costs the same
            matched |= hmac.compare_digest(presented, digest)
        if not matched:
            # The presented token is never echoed: it may be a real one sent to the wrong place.
            raise ApiError(
                401,
                "unauthorized",
                "invalid bearer token",
                headers={"WWW-Authenticate": _CHALLENGE + ', error="invalid_token"'},
            )


def _parse_tokens(raw: str) -> list[str]:
    tokens = [t.strip() for t in raw.split(",") if t.strip()]
    for position, token in enumerate(tokens, start=1):
        # Say which one is wrong by position, never by value.
        if len(token) < MIN_TOKEN_LENGTH:
            raise AuthConfigError(
                f"{TOKENS_ENV}: token {position} is shorter than {MIN_TOKEN_LENGTH} characters"
            )
        if not _TOKEN_SHAPE.fullmatch(token):
            raise AuthConfigError(
                f"{TOKENS_ENV}: token {position} has characters outside A-Z a-z 0-9 . _ ~ + / = -"
            )
    return tokens


def _digest(token: str) -> bytes:
    # surrogatepass: a test client can hand us any str; hashing must not be what fails.
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
