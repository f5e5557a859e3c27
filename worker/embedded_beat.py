"""The sweeper on the embedded default, run by the workers themselves.

Without REDIS_URL there is no `falbridge beat` to start (everything runs on one machine,
often by hand), so each worker runs a thread that sweeps when a sweep is due: every
FALBRIDGE_RECONCILE_INTERVAL_S, exactly once however many workers there are. A file lock
in the var dir decides who sweeps, and the time of the last sweep, kept beside it, whether
one is due; if the worker that swept last dies, another takes over at the next interval.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)


def start(
    var_dir: Path, interval_s: float, sweep: Callable[[], object], name: str = "sweeper"
) -> threading.Thread:
    """A daemon thread calling `sweep` whenever one is due and this process holds the lock
    (`name`: its own lock and time, so the purge keeps its own schedule beside the sweep's)."""
    home = var_dir / name
    home.mkdir(parents=True, exist_ok=True)

    def loop() -> None:
        while True:
            time.sleep(min(interval_s, 5.0) / 2)
            with contextlib.suppress(Exception):  # a failed sweep is retried at the next turn
                sweep_if_due(home, interval_s, sweep)

    thread = threading.Thread(target=loop, name=f"falbridge-{name}", daemon=True)
    thread.start()
    return thread


def sweep_if_due(home: Path, interval_s: float, sweep: Callable[[], object]) -> bool:
    """Sweep if no other process is sweeping and the last sweep is `interval_s` old."""
    with open(home / "lock", "a") as held:
        try:  # per process: a forked child does not hold it
            fcntl.lockf(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False  # another worker is sweeping right now
        try:
            last = home / "last_sweep"
            if time.time() - _read_time(last) < interval_s:
                return False
            sweep()
            last.write_text(repr(time.time()))
            return True
        finally:
            fcntl.lockf(held, fcntl.LOCK_UN)


def _read_time(path: Path) -> float:
    try:
        return float(path.read_text())
    except (OSError, ValueError):
        return 0.0
