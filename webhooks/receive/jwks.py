"""fal's webhook signing keys (JWKS), fetched lazily and cached (docs/fal-protocol.md,
"Signatures").

Cached for at most `ttl_s` (fal: never longer than 24 h), and refetched once when no cached
key verifies and the cache is older than `refetch_min_age_s` (a rotation). One fetch at a
time, so a burst of callbacks signed with a new key costs one fetch, not one per request; a
failed fetch is not retried for `retry_after_s`, and no request waits on a fetch for longer
than `wait_s`.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

log = logging.getLogger(__name__)


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


# A request waits for a JWKS fetch in flight at most this long, counted from the fetch's
# start: a hanging JWKS holds the requests arriving in its first second until that second
# is up, later ones not at all. fal answers its JWKS in milliseconds; a slower fetch still
# lands in the cache for fal's next delivery.
FETCH_WAIT_S = 1.0
# fal's own example fetches its JWKS with a 10-second timeout. Here it bounds the whole
# fetch (connect, each read, and the body), which runs in its own thread, not a request's.
FETCH_TIMEOUT_S = 10.0
# After a failed fetch none is made for this long, whatever asks for one (an expired cache,
# a rotation, a forged signature): at most one fetch per window, however many requests.
RETRY_AFTER_S = 30.0
MAX_JWKS_BYTES = 64 * 1024  # fal's JWKS is a few hundred bytes


@dataclass(frozen=True)
class _KeySet:
    keys: list[Ed25519PublicKey]  # replaced whole, never changed: compared by identity
    fetched_at: float


class _Fetch:
    """One JWKS request in flight; every thread that needs keys meanwhile waits on it."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.done = threading.Event()
        self.result: _KeySet | None = None


class JwksCache:
    """fal's keys, fetched lazily and shared by every request thread of a process.

    One fetch at a time, in a thread of its own: a request that needs keys starts it or
    joins the one in flight, waits for it at most `wait_s` from its start, then carries on
    with what it has (JwksUnavailable, a 503, when that is nothing usable). A failed fetch
    is remembered: none is made again for `retry_after_s`. `fetches` counts the JWKS
    requests made and `last_error` says why the last one failed (None after a success).
    """

    def __init__(
        self,
        url: str,
        *,
        ttl_s: float = 86400,
        refetch_min_age_s: float = 60,
        retry_after_s: float = RETRY_AFTER_S,
        wait_s: float = FETCH_WAIT_S,
        fetch_timeout_s: float = FETCH_TIMEOUT_S,
        http: httpx.Client | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.url = url
        self.ttl_s = ttl_s
        self.refetch_min_age_s = refetch_min_age_s
        self.retry_after_s = retry_after_s
        self.wait_s = wait_s
        self.fetch_timeout_s = fetch_timeout_s
        timeout = httpx.Timeout(fetch_timeout_s, connect=min(5.0, fetch_timeout_s))
        self._http = http or httpx.Client(timeout=timeout)
        self._clock = clock  # ages and the backoff (tests move it); waits use real time
        self._lock = threading.Lock()  # guards the fields below; never held while fetching
        self._current: _KeySet | None = None
        self._fetch: _Fetch | None = None
        self._failed_at: float | None = None
        self.last_error: str | None = None
        self.fetches = 0  # JWKS requests made, for operators and tests

    def keys(self) -> list[Ed25519PublicKey]:
        """The cached keys, fetched first when there are none or they are older than
        `ttl_s`. JwksUnavailable when no usable key can be had right now."""
        current = self._current
        if current is not None and self._age(current) <= self.ttl_s:
            return current.keys
        with self._lock:
            current = self._current
            if current is not None and self._age(current) <= self.ttl_s:
                return current.keys  # another thread's fetch has just landed
            fetch = self._join_or_start()
        fetched = self._wait(fetch)
        if fetched is None:
            # Fail closed: past fal's 24 h limit a cached key may no longer be trusted.
            raise JwksUnavailable(self._unavailable("no usable verification keys"))
        return fetched.keys

    def refresh_for_rotation(self, tried: list[Ed25519PublicKey]) -> bool:
        """No key in `tried` (what keys() returned) verified a signature: True when there
        are others to try, refetched (by this thread or another) if the cache is older than
        `refetch_min_age_s`; False when `tried` is more recent than that. JwksUnavailable
        when a refetch is due but can't be had (failed, backing off, or still in flight after
        the wait): fal may have rotated its keys, so the answer must let fal retry."""
        with self._lock:
            current = self._current
            if current is not None and current.keys is not tried:
                return True
            if current is not None and self._age(current) < self.refetch_min_age_s:
                return False
            fetch = self._join_or_start()
        if self._wait(fetch) is None:
            raise JwksUnavailable(self._unavailable("no cached key verifies and none can be refetched"))
        return True

    def _age(self, keyset: _KeySet) -> float:
        return self._clock() - keyset.fetched_at

    def _join_or_start(self) -> _Fetch | None:
        """The fetch in flight, else a new one; None while backing off. Hold _lock."""
        if self._fetch is None:
            if self._failed_at is not None and self._clock() - self._failed_at < self.retry_after_s:
                return None
            self._fetch = _Fetch()
            self.fetches += 1
            threading.Thread(target=self._run, args=(self._fetch,), name="jwks-fetch", daemon=True).start()
        return self._fetch

    def _wait(self, fetch: _Fetch | None) -> _KeySet | None:
        if fetch is not None:
            fetch.done.wait(max(0.0, fetch.started + self.wait_s - time.monotonic()))
            return fetch.result
        return None

    def _run(self, fetch: _Fetch) -> None:
        keys: list[Ed25519PublicKey] = []
        error = "the fetch ended unexpectedly"
        try:
            keys = self._download()
            error = "no usable Ed25519 key in the document"
        except (httpx.HTTPError, ValueError, RecursionError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        except Exception as exc:  # a thread of its own: it must end its fetch, whatever happens
            log.exception("JWKS fetch from %s failed unexpectedly", self.url)
            error = f"{type(exc).__name__}: {exc}"
        finally:
            with self._lock:
                if keys:
                    fetch.result = self._current = _KeySet(keys, self._clock())
                    self._failed_at, self.last_error = None, None
                else:
                    self._failed_at, self.last_error = self._clock(), error
                self._fetch = None
            fetch.done.set()
        if not keys:
            log.warning(
                "JWKS fetch from %s failed (%s); next one in %g s at the earliest",
                self.url,
                error,
                self.retry_after_s,
            )

    def _download(self) -> list[Ed25519PublicKey]:
        deadline = time.monotonic() + self.fetch_timeout_s
        with self._http.stream("GET", self.url) as response:
            if not response.is_success:
                raise ValueError(f"answered HTTP {response.status_code}")
            body = bytearray()
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > MAX_JWKS_BYTES:
                    raise ValueError(f"document over {MAX_JWKS_BYTES} bytes")
                if time.monotonic() > deadline:  # a server trickling bytes defeats per-read timeouts
                    raise ValueError(f"not downloaded within {self.fetch_timeout_s:g} s")
        return parse_jwks(json.loads(body))

    def _unavailable(self, what: str) -> str:
        state = f"last fetch failed: {self.last_error}" if self.last_error else "a fetch is in flight"
        return f"{what} from {self.url} ({state})"
