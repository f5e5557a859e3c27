"""Fetching a URL on falbridge's own behalf (result files to keep, remote inputs to
inline) without becoming a proxy into the network it runs in (SSRF).

- only http and https;
- every address the host resolves to must be public: loopback, private, link-local
  (cloud metadata lives at 169.254.169.254), shared, multicast and reserved ranges are
  refused unless explicitly allowed (FALBRIDGE_FETCH_ALLOW_PRIVATE=1; the tests and the
  sandbox need loopback). An IPv6 address that embeds an IPv4 address for a translator or
  tunnel to reach (NAT64 64:ff9b::/96, 6to4 2002::/16, IPv4-compatible ::a.b.c.d,
  IPv4-mapped and -translated) is judged by that IPv4 address; Teredo (2001::/32) and
  local-use NAT64 (64:ff9b:1::/48, whose embedding is the operator's choice) are refused;
- the connection goes to the very address that was checked: the request names that
  address, the URL's host goes in the Host header and, for https, is the TLS server name
  (SNI) the certificate is verified against. A DNS answer that changes between the check
  and the connection (rebinding) changes nothing. No connection is reused (each is
  verified for its own host) and no proxy from the environment is used (it would connect
  in our stead);
- redirects are followed by hand, at most a few, and every hop is checked and pinned again;
- a size cap enforced while streaming, and explicit timeouts.

Known limit: an IPv4 address reached through a translation this module cannot see (a
network's own NAT64 prefix, 6rd, a proxy at the edge) is judged by the IPv6 address only;
egress filtering at the network edge is the complete answer.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx

from falbridge import config
from falbridge.worker.download.connections import client_for

DEFAULT_MAX_BYTES = 50 * 1024 * 1024
MAX_REDIRECTS = 3

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# Where the embedded IPv4 address is the last 32 bits: IPv4-mapped, IPv4-translated (SIIT),
# NAT64's well-known prefix, IPv4-compatible (deprecated; holds :: and ::1 too).
_EMBED_LAST_32 = tuple(
    ipaddress.IPv6Network(net) for net in ("::ffff:0:0/96", "::ffff:0:0:0/96", "64:ff9b::/96", "::/96")
)
_REFUSED_V6 = tuple(ipaddress.IPv6Network(net) for net in ("2001::/32", "64:ff9b:1::/48"))


class FetchRefused(ValueError):
    """The URL is not one falbridge will fetch; the message says why."""


class Unresolvable(FetchRefused):
    """The URL's host has no address (now)."""


@dataclass(frozen=True)
class FetchPolicy:
    allow_private: bool = False
    max_bytes: int = DEFAULT_MAX_BYTES
    timeout: httpx.Timeout = field(default_factory=lambda: httpx.Timeout(30.0, connect=5.0))
    verify: ssl.SSLContext | bool = True  # the tests' own CA; never False outside them

    @classmethod
    def configured(cls) -> FetchPolicy:
        """FALBRIDGE_FETCH_ALLOW_PRIVATE and FALBRIDGE_FETCH_MAX_BYTES."""
        fetch = config.current().fetch
        return cls(allow_private=fetch.allow_private, max_bytes=fetch.max_bytes)


def is_public(address: IPAddress) -> bool:
    if isinstance(address, ipaddress.IPv6Address):
        if any(address in net for net in _REFUSED_V6):
            return False
        if address.sixtofour is not None:
            return is_public(address.sixtofour)
        if any(address in net for net in _EMBED_LAST_32):
            return is_public(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return address.is_global and not address.is_multicast


def resolve(url: str) -> tuple[httpx.URL, list[IPAddress]]:
    """An http(s) URL without credentials, and every address its host resolves to;
    FetchRefused otherwise. Judging the addresses is the caller's rule."""
    try:
        parts = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise FetchRefused(f"not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise FetchRefused(f"only http and https URLs are fetched, not {parts.scheme or 'a bare path'!r}")
    if not parts.host:
        raise FetchRefused("URL has no host")
    if parts.userinfo:
        raise FetchRefused("URLs with credentials are not fetched")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(parts.raw_host.decode("ascii"), port, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError) as exc:
        raise Unresolvable(f"cannot resolve {parts.host}: {exc}") from None
    return parts, [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]  # TCP: IPs


def check_url(url: str, policy: FetchPolicy) -> IPAddress:
    """Refuse a URL falbridge must not fetch; else the address to connect to (the first
    the host resolves to; every one was checked)."""
    parts, addresses = resolve(url)
    for address in addresses:
        if not policy.allow_private and not is_public(address):
            raise FetchRefused(f"{parts.host} resolves to {address}, a non-public address")
    return addresses[0]


def pinned(parts: httpx.URL, address: IPAddress) -> tuple[httpx.URL, dict[str, str], dict[str, Any]]:
    """The request to `parts` sent to `address` (the checked one): the URL naming it, the
    Host header, and for https the TLS server name the certificate is verified against."""
    tls_name = {"sni_hostname": parts.raw_host.decode("ascii")} if parts.scheme == "https" else {}
    return parts.copy_with(host=str(address)), {"Host": parts.netloc.decode("ascii")}, tls_name


def fetch_bytes(url: str, policy: FetchPolicy | None = None) -> tuple[bytes, str | None]:
    """GET a URL under the policy; returns (body, content type). Raises FetchRefused or httpx errors."""
    with fetch_stream(url, policy) as fetched:
        return b"".join(fetched.chunks()), fetched.content_type


@dataclass
class Fetched:
    """An answer being read: its declared content type and length, and its body chunk by
    chunk (the size cap enforced as it streams)."""

    response: httpx.Response
    max_bytes: int

    @property
    def content_type(self) -> str | None:
        value: str | None = self.response.headers.get("content-type")
        return value

    def chunks(self, chunk_size: int = 256 * 1024) -> Iterator[bytes]:
        size = 0
        for chunk in self.response.iter_bytes(chunk_size):
            size += len(chunk)
            if size > self.max_bytes:
                raise FetchRefused(f"more than the {self.max_bytes}-byte limit")
            yield chunk


@contextmanager
def fetch_stream(url: str, policy: FetchPolicy | None = None) -> Iterator[Fetched]:
    """GET a URL under the policy, its body left to stream: nothing is held in memory but
    the chunk being read. Raises FetchRefused or httpx errors (HTTPStatusError for a 4xx/5xx)."""
    policy = policy or FetchPolicy.configured()
    for _hop in range(MAX_REDIRECTS + 1):
        address, parts = check_url(url, policy), httpx.URL(url)
        target, host, tls_name = pinned(parts, address)
        client = client_for(target, tls_name.get("sni_hostname", ""), policy.timeout, policy.verify)
        with client.stream("GET", target, headers=host, extensions=tls_name) as response:
            if response.is_redirect:
                location = response.headers.get("location")
                if not location:
                    raise FetchRefused("redirect without a Location")
                url = str(parts.join(location))
                continue
            response.raise_for_status()
            declared = response.headers.get("content-length")
            if declared and declared.isdigit() and int(declared) > policy.max_bytes:
                raise FetchRefused(f"{declared} bytes is over the {policy.max_bytes}-byte limit")
            yield Fetched(response, policy.max_bytes)
            return
    raise FetchRefused(f"more than {MAX_REDIRECTS} redirects")
