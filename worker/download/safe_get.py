"""Fetching a URL on falbridge's own behalf (result files to keep, remote inputs to
inline) without becoming a proxy into the network it runs in (SSRF).

- only http and https;
- every address the host resolves to must be public: loopback, private, link-local
  (cloud metadata lives at 169.254.169.254), shared, multicast and reserved ranges are
  refused unless explicitly allowed (FALBRIDGE_FETCH_ALLOW_PRIVATE=1; the tests and the
  sandbox need loopback);
- redirects are followed by hand, at most a few, and every hop is checked again;
- a size cap enforced while streaming, and explicit timeouts.

Known limit: the address is checked at resolution time and httpx resolves again when it
connects, so a DNS server answering differently the second time (rebinding) is not
stopped here; egress filtering at the network edge is the complete answer.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit

import httpx

from falbridge import config

DEFAULT_MAX_BYTES = 50 * 1024 * 1024
MAX_REDIRECTS = 3


class FetchRefused(ValueError):
    """The URL is not one falbridge will fetch; the message says why."""


@dataclass(frozen=True)
class FetchPolicy:
    allow_private: bool = False
    max_bytes: int = DEFAULT_MAX_BYTES
    timeout: httpx.Timeout = field(default_factory=lambda: httpx.Timeout(30.0, connect=5.0))

    @classmethod
    def configured(cls) -> FetchPolicy:
        """FALBRIDGE_FETCH_ALLOW_PRIVATE and FALBRIDGE_FETCH_MAX_BYTES."""
        fetch = config.current().fetch
        return cls(allow_private=fetch.allow_private, max_bytes=fetch.max_bytes)


def _is_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


def check_url(url: str, policy: FetchPolicy) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise FetchRefused(f"only http and https URLs are fetched, not {parts.scheme or 'a bare path'!r}")
    if not parts.hostname:
        raise FetchRefused("URL has no host")
    if parts.username or parts.password:
        raise FetchRefused("URLs with credentials are not fetched")
    try:
        infos = socket.getaddrinfo(
            parts.hostname, parts.port or (443 if parts.scheme == "https" else 80), proto=socket.IPPROTO_TCP
        )
    except (socket.gaierror, UnicodeError) as exc:
        raise FetchRefused(f"cannot resolve {parts.hostname}: {exc}") from None
    if policy.allow_private:
        return
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%")[0])  # TCP: an IP address
        if not _is_public(address):
            raise FetchRefused(f"{parts.hostname} resolves to {address}, a non-public address")


def fetch_bytes(
    url: str, policy: FetchPolicy | None = None, client: httpx.Client | None = None
) -> tuple[bytes, str | None]:
    """GET a URL under the policy; returns (body, content type). Raises FetchRefused or httpx errors."""
    policy = policy or FetchPolicy.configured()
    own = client is None
    client = client or httpx.Client(timeout=policy.timeout, follow_redirects=False)
    try:
        for _hop in range(MAX_REDIRECTS + 1):
            check_url(url, policy)
            with client.stream("GET", url) as response:
                if response.is_redirect:
                    location = response.headers.get("location")
                    if not location:
                        raise FetchRefused("redirect without a Location")
                    url = urljoin(url, location)
                    continue
                response.raise_for_status()
                declared = response.headers.get("content-length")
                if declared and declared.isdigit() and int(declared) > policy.max_bytes:
                    raise FetchRefused(f"{declared} bytes is over the {policy.max_bytes}-byte limit")
                chunks, size = [], 0
                for chunk in response.iter_bytes():
                    size += len(chunk)
                    if size > policy.max_bytes:
                        raise FetchRefused(f"more than the {policy.max_bytes}-byte limit")
                    chunks.append(chunk)
                return b"".join(chunks), response.headers.get("content-type")
        raise FetchRefused(f"more than {MAX_REDIRECTS} redirects")
    finally:
        if own:
            client.close()
