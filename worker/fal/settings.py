"""Configuration of the queue client: defaults, credentials and the base URL.

The key is only ever held inside ``KeyAuth``, whose repr is redacted, and every check
here reports *what* is wrong without quoting the key.
"""

from __future__ import annotations

from collections.abc import Generator

import httpx

from falbridge.worker.fal.errors import FalConfigError

DEFAULT_QUEUE_URL = "https://queue.fal.run"
DEFAULT_TIMEOUT = httpx.Timeout(connect=5.0, read=30.0, write=30.0, pool=5.0)
DEFAULT_LIMITS = httpx.Limits(max_connections=20, max_keepalive_connections=10, keepalive_expiry=5.0)
DEFAULT_USER_AGENT = "falbridge-worker/0.1"
KEY_ENV_HINT = "set FAL_KEY, or FAL_KEY_ID and FAL_KEY_SECRET"


class KeyAuth(httpx.Auth):
    """Adds ``Authorization: Key ...`` per request, so the key never sits in client headers."""

    def __init__(self, key: str) -> None:
        self.__key = key

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Key {self.__key}"
        yield request

    def __repr__(self) -> str:
        return "KeyAuth(<redacted>)"


def checked_key(key: str | None) -> str:
    if key is None:
        raise FalConfigError(f"no fal key: {KEY_ENV_HINT}")
    if not isinstance(key, str) or not key.strip():
        raise FalConfigError(f"the fal key is empty ({KEY_ENV_HINT})")
    key = key.strip()
    # Checked here so httpx never raises an encoding error that quotes the key back.
    if not key.isascii() or not key.isprintable() or any(c.isspace() for c in key):
        raise FalConfigError("the fal key contains characters not allowed in an HTTP header")
    return key


def checked_base_url(base_url: str) -> str:
    try:
        url = httpx.URL(base_url)
    except httpx.InvalidURL as exc:
        raise FalConfigError(f"invalid queue base URL {base_url!r}: {exc}") from None
    if url.scheme not in ("http", "https") or not url.host or url.query or url.fragment:
        raise FalConfigError(f"queue base URL must be http(s)://host[:port][/path], got {base_url!r}")
    return str(url).rstrip("/")


def origin_of(url: str) -> str:
    parsed = httpx.URL(url)
    port = parsed.port or {"http": 80, "https": 443}.get(parsed.scheme)
    return f"{parsed.scheme}://{parsed.host}:{port}"
