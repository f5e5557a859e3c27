"""Kept-alive connections for the worker's own HTTP calls to addresses it checked first
(result files' downloads, subscribers' webhooks): one httpx client per checked address,
port, scheme, TLS name, timeout and trust, shared by the threads of a worker process, so
a wave's requests to one host reuse their connections instead of opening and closing one
each (a connection's setup and a client's construction were a fifth of a webhook
attempt's CPU).

The key is the address each request was checked against just before (safe_get's
resolver), so a DNS answer that changes sends the next request through another client to
the new, checked address, never down a connection to an unchecked one; a connection
verified for one TLS name is never reused for another. Cookies are not kept: nothing the
worker calls is a session.
"""

from __future__ import annotations

import functools
import os
import ssl
import threading
from collections import OrderedDict
from http.cookiejar import CookieJar, DefaultCookiePolicy

import httpx

# Shorter than the idle timeouts servers commonly close kept-alive connections after
# (gunicorn 2 s, uvicorn and Node 5 s): a connection the server may already have closed
# is not reused, since a POST sent down one fails. Under volume reuse comes within
# milliseconds, so little is lost to a short expiry.
KEEPALIVE_EXPIRY_S = 1.5
# Distinct keys a process keeps clients for; the least recently used
# beyond it is dropped (not closed: a thread may still be using it; its connections go
# with it once unreferenced).
MAX_CLIENTS = 64

Key = tuple[str, str, int, str, tuple[float | None, ...], int]

_lock = threading.Lock()
_clients: OrderedDict[Key, httpx.Client] = OrderedDict()
_owner = os.getpid()


@functools.cache
def default_tls() -> ssl.SSLContext:
    """The system's trust store as one context per process: building it (the CA bundle
    loaded) costs about 20 ms of CPU, more than the rest of a small file's download.
    trust_env=False, as the clients using it: SSL_CERT_FILE/SSL_CERT_DIR are not read."""
    return httpx.create_ssl_context(trust_env=False)


def client_for(
    target: httpx.URL, tls_name: str, timeout: httpx.Timeout, verify: ssl.SSLContext | bool = True
) -> httpx.Client:
    """The shared client for requests to `target`'s (pinned) address. `verify` is the
    system's trust store unless a test names its own CA (kept alive by the client, so
    its id names one context while the entry lasts)."""
    global _owner
    trust = default_tls() if verify is True else verify
    limits = (timeout.connect, timeout.read, timeout.write, timeout.pool)
    key: Key = (target.scheme, target.host, target.port or 0, tls_name, limits, id(trust))
    with _lock:
        if _owner != os.getpid():  # a forked child: the parent's connections are not its own
            _clients.clear()
            _owner = os.getpid()
        client = _clients.get(key)
        if client is None:
            client = _clients[key] = _new_client(timeout, trust)
            while len(_clients) > MAX_CLIENTS:
                _clients.popitem(last=False)
        else:
            _clients.move_to_end(key)
        return client


def _new_client(timeout: httpx.Timeout, trust: ssl.SSLContext | bool) -> httpx.Client:
    return httpx.Client(
        timeout=timeout,
        follow_redirects=False,
        trust_env=False,
        limits=httpx.Limits(keepalive_expiry=KEEPALIVE_EXPIRY_S),
        verify=trust,
        cookies=CookieJar(policy=DefaultCookiePolicy(allowed_domains=[])),
    )
