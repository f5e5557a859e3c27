"""A broker outage is one warning per 30 s per process, not one line per retry.

While Redis is down, Celery's consumer logs every reconnection attempt (with a traceback
when it gives up on a step), kombu logs its own, and every enqueue that fails would log
one more: a minute of outage made thousands of lines. `BrokerOutageFilter`, on each log
handler of a worker or receiver process, keeps the first such record of each 30 s window,
shortened to one line (no traceback) and counting what it held back, and drops the rest.
Everything else passes untouched.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

WINDOW_S = 30.0
_SIGNS = (
    "Cannot connect to",
    "Connection to broker lost",
    "could not enqueue",
    "Error while reading from socket",
    "Connection refused",
    "connection_errors",
)
_ERROR_TYPES = ("ConnectionError", "OperationalError", "ConnectionRefusedError", "TimeoutError", "OSError")


def is_broker_outage(record: logging.LogRecord) -> bool:
    error = record.exc_info[0] if record.exc_info else None
    if error is not None and any(cls.__name__ in _ERROR_TYPES for cls in error.__mro__):
        return True
    text = record.getMessage()
    return any(sign in text for sign in _SIGNS)


class BrokerOutageFilter(logging.Filter):
    def __init__(self, window_s: float = WINDOW_S, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.window_s = window_s
        self._clock = clock
        self._lock = threading.Lock()
        self._window_started: float | None = None
        self._held_back = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if not is_broker_outage(record):
            return True
        now = self._clock()
        with self._lock:
            if self._window_started is not None and now - self._window_started < self.window_s:
                self._held_back += 1
                return False
            held, self._held_back, self._window_started = self._held_back, 0, now
        first_line = (record.getMessage().strip().splitlines() or ["broker unreachable"])[0]
        also = f"; {held} more such messages in the last {self.window_s:g}s" if held else ""
        record.msg, record.args = f"broker unreachable: {first_line[:300]}{also}", ()
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def install(logger: logging.Logger | None = None) -> None:
    """Put one filter on every handler of `logger` (the root logger by default) that has
    none yet: records reach handlers by propagation, past a filter on the logger."""
    target = logger or logging.getLogger()
    shared = (
        next((f for h in target.handlers for f in h.filters if isinstance(f, BrokerOutageFilter)), None)
        or BrokerOutageFilter()
    )
    for handler in target.handlers:
        if shared not in handler.filters:
            handler.addFilter(shared)
