"""Which subscriber URLs falbridge will call: http(s), no credentials, and every address
the host resolves to public or inside FALBRIDGE_NOTIFY_ALLOWED_NETWORKS (users' services
often live on private networks, so this rule is theirs to widen; it is separate from the
rule for falbridge's own downloads, FALBRIDGE_FETCH_ALLOW_PRIVATE).

Checked when a subscription is made or changed, and again at each connection, which goes
to the very address that was checked (falbridge.worker.download.safe_get's pieces: its
resolver, its idea of public, its pinning), so a DNS answer that changes in between
changes nothing.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import httpx

from falbridge.worker.download.safe_get import FetchRefused, IPAddress, Unresolvable, is_public, resolve

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
MAX_URL_LENGTH = 2048
# The URLs a subscription may name (the API's schema states the same): http(s), a host of
# letters, digits, dots and dashes (no IPv6 literal), an optional port, path and query.
# Every part is delimited, so matching is linear (no backtracking blow-up). httpx takes a
# host of four dot-separated digit runs for an IPv4 address and refuses it unless it is one
# ("00.0.0.0", "256.1.1.1"): such a host must be a proper dotted quad.
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
_END_OF_HOST = r"(?=[:/?]|$)"
_IPV4_STYLE = r"[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+" + _END_OF_HOST
URL_SHAPE = (
    r"^[Hh][Tt][Tt][Pp][Ss]?://"
    rf"(?:{_OCTET}(?:\.{_OCTET}){{3}}{_END_OF_HOST}|(?!{_IPV4_STYLE})"
    r"[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63}){0,10}\.?)"
    r"(?::(?:[1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]))?"
    r"(?:/[A-Za-z0-9._~!$&'()*+,;=:@%/-]*)?(?:\?[A-Za-z0-9._~!$&'()*+,;=:@%/?-]*)?$"
)
_URL_SHAPE = re.compile(URL_SHAPE)
# How long an API request naming a URL (a subscription, a job's notify_url) waits on DNS.
# The system resolver has no timeout of its own to pass (glibc: 5 s a try, two tries), and
# a host it cannot answer for in time is taken like one that does not resolve: each
# connection checks again. A lookup still running ends in its pool thread.
RESOLVE_WITHIN_S = 2.0
_lookups = ThreadPoolExecutor(max_workers=4, thread_name_prefix="callback-url-dns")


def well_formed(url: str) -> bool:
    return len(url) <= MAX_URL_LENGTH and _URL_SHAPE.fullmatch(url) is not None


class AddressRefused(ValueError):
    """The URL is not one falbridge will call; the message says why."""


class Unresolved(AddressRefused):
    """The host has no address now: a subscription may still name it (DNS may be
    transient, or differ where the workers run); each connection checks again."""


def refusal(
    url: str, allowed: Sequence[Network], *, resolve_within_s: float = RESOLVE_WITHIN_S
) -> str | None:
    """Why `url` can't be a subscriber's or a job's callback address, or None. A host
    that does not resolve yet, or not within `resolve_within_s`, is taken: each
    connection checks again."""
    if not well_formed(url):
        return f"must be an http(s) URL with a host name or IPv4 address, at most {MAX_URL_LENGTH} characters"
    try:
        _lookups.submit(check, url, allowed).result(timeout=resolve_within_s)
    except (Unresolved, TimeoutError):
        return None
    except AddressRefused as exc:
        return str(exc)
    return None


def check(url: str, allowed: Sequence[Network]) -> tuple[httpx.URL, IPAddress]:
    """The URL's parts and the address to connect to; AddressRefused otherwise."""
    if len(url) > MAX_URL_LENGTH:
        raise AddressRefused(f"URL longer than {MAX_URL_LENGTH} characters")
    try:
        parts, addresses = resolve(url)
    except FetchRefused as exc:
        raise (Unresolved if isinstance(exc, Unresolvable) else AddressRefused)(
            str(exc).replace("fetched", "called")
        ) from None
    for address in addresses:
        if not (is_public(address) or _inside(address, allowed)):
            raise AddressRefused(
                f"{parts.host} resolves to {address}, a non-public address outside "
                "FALBRIDGE_NOTIFY_ALLOWED_NETWORKS"
            )
    return parts, addresses[0]


def _inside(address: IPAddress, allowed: Sequence[Network]) -> bool:
    candidates: list[IPAddress] = [address]
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        candidates.append(address.ipv4_mapped)
    return any(candidate in network for candidate in candidates for network in allowed)
