"""Counts outstanding work so callers can wait for "nothing left to happen".

Every queued or running job and every scheduled or in-flight delivery attempt holds one
token. Whoever schedules follow-up work takes its token before releasing its own, so the
count never touches zero while something is still about to happen.
"""

from __future__ import annotations

import threading
import time


class Activity:
    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._busy = 0
        self._closed = False
        self.waiters = 0  # callers parked in wait_idle, for diagnostics

    def begin(self, count: int = 1) -> None:
        with self._cond:
            self._busy += count

    def end(self, count: int = 1) -> None:
        with self._cond:
            self._busy -= count
            if self._busy <= 0:
                self._busy = 0
                self._cond.notify_all()

    @property
    def busy(self) -> int:
        return self._busy

    def wait_idle(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            self.waiters += 1
            try:
                while self._busy > 0 and not self._closed:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return False
                    self._cond.wait(remaining)
                return self._busy == 0 and not self._closed  # shutting down is not "idle"
            finally:
                self.waiters -= 1

    def close(self) -> None:
        """Wake every waiter (server shutdown)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
