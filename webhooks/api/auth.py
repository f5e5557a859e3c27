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
from dataclasses import dataclass

from falbridge.config import ApiConfig, split_tokens
from falbridge.webhooks.errors import ApiError

_CHALLENGE = 'Bearer realm="falbridge"'

NOT_CONFIGURED = "API authentication is not configured: set FALBRIDGE_API_TOKENS"
OFF_WARNING = (
    "API authentication is OFF (FALBRIDGE_API_AUTH=off): every /api route is open to anyone "
    "who can reach this port. Only the embedded demo may run like this."
)


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
    def from_config(cls, api: ApiConfig) -> ApiAuth:
        """The tokens' shapes were checked when the configuration was read."""
        if api.auth == "off":
            return cls(enabled=False)
        return cls(digests=tuple(token_digest(token) for token in split_tokens(api.tokens)))

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
        presented = token_digest(token.strip())
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


def token_digest(token: str) -> bytes:
    # surrogatepass: a test client can hand us any str; hashing must not be what fails.
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
