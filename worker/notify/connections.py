"""Kept-alive connections to subscribers: one httpx client per checked address, port,
scheme and TLS name, shared by the threads of a worker process, so a wave's POSTs to one
service reuse their connections instead of opening and closing one each (a connection's
setup and a client's construction were a fifth of an attempt's CPU).

The key is the address each POST was checked against just before (address.check), so a
DNS answer that changes sends the next POST through another client to the new, checked
address, never down a connection to an unchecked one; a connection verified for one TLS
name is never reused for another. Cookies a subscriber sets are not kept: a webhook
carries none.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from http.cookiejar import CookieJar, DefaultCookiePolicy

import httpx

from falbridge.worker.download.safe_get import default_tls

# Shorter than the idle timeouts servers commonly close kept-alive connections after
# (gunicorn 2 s, uvicorn and Node 5 s): a connection the server may already have closed
# is not reused, since a POST sent down one fails. Under volume reuse comes within
# milliseconds, so little is lost to a short expiry.
KEEPALIVE_EXPIRY_S = 1.5
# Distinct subscriber addresses a process keeps clients for; the least recently used
# beyond it is dropped (not closed: a thread may still be using it; its connections go
# with it once unreferenced).
MAX_CLIENTS = 64

Key = tuple[str, str, int, str, float]

_lock = threading.Lock()
_clients: OrderedDict[Key, httpx.Client] = OrderedDict()
_owner = os.getpid()


def client_for(target: httpx.URL, tls_name: str, timeout_s: float) -> httpx.Client:
    """The shared client for POSTs to `target`'s (pinned) address."""
    global _owner
    key: Key = (target.scheme, target.host, target.port or 0, tls_name, timeout_s)
    with _lock:
        if _owner != os.getpid():  # a forked child: the parent's connections are not its own
            _clients.clear()
            _owner = os.getpid()
        client = _clients.get(key)
        if client is None:
            client = _clients[key] = _new_client(timeout_s)
            while len(_clients) > MAX_CLIENTS:
                _clients.popitem(last=False)
        else:
            _clients.move_to_end(key)
        return client


def _new_client(timeout_s: float) -> httpx.Client:
    return httpx.Client(
        timeout=httpx.Timeout(timeout_s),
        follow_redirects=False,
        trust_env=False,
        limits=httpx.Limits(keepalive_expiry=KEEPALIVE_EXPIRY_S),
        verify=default_tls(),  # the CA bundle loaded once per process
        cookies=CookieJar(policy=DefaultCookiePolicy(allowed_domains=[])),
    )
