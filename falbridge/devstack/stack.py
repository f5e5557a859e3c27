"""LocalStack: falbridge's whole system on this machine, every part a real process started
the way production starts it (`falbridge serve`, `falbridge worker`, `falbridge beat`),
with the sandbox standing in for fal.

The demo, the benchmarks and the chaos run differ only in their choices (which database,
how many workers, which faults); how a part is started, how its readiness is known, and
how everything is reaped afterwards is here, once. Each child's output goes to
`<run_dir>/<name>.log`. Nothing here runs in production.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from falbridge.devstack.processes import (
    Launch,
    ProcessGroup,
    signals_held,
    stop_all,
    wait_http,
    wait_log,
)
from falbridge.devstack.proxy import NginxProxy, find_nginx
from falbridge.devstack.services import PostgresCluster, RedisServer, find_pg_bin, free_port
from falbridge.models.db import get_engine
from falbridge.models.migrate import upgrade

# Celery logs "<node> ready." once it consumes, at INFO, the level `falbridge worker` runs
# at by default: the one sign of readiness that needs no broker connection of our own.
WORKER_READY = b" ready."
BEAT_READY = b"beat: Starting..."
SANDBOX_FAL_KEY = "sandbox-key-id:sandbox-key-secret"  # the sandbox takes any key
SANDBOX_USER_ID = "sandbox-user"  # the fal user id the sandbox signs its callbacks as
# A real key or fal user id in the caller's shell must never reach a child that talks to
# the sandbox (or to nothing): the key would be sent to it, the user id would make the
# receiver refuse the sandbox's callbacks.
REAL_FAL_VARIABLES = ("FAL_KEY_ID", "FAL_KEY_SECRET", "FAL_WEBHOOK_USER_ID")


def python_module(*args: str) -> tuple[str, ...]:
    """`python -m ...` with this interpreter, so children run in the same virtualenv."""
    return (sys.executable, "-m", *args)


class LocalStack:
    """Database, Redis, the children's environment, and the processes started from it.

    Call the `start_*`/`use_*` methods in dependency order (database and Redis, then the
    sandbox, the receiver, workers, beat): each records in `env` what the processes
    started after it need to find it. `stop()` reaps everything, whatever happened.
    """

    def __init__(self, run_dir: Path, *, cwd: Path | None = None) -> None:
        self.run_dir = run_dir
        self.cwd = cwd
        # What every child starts with: what this process was given (PATH, the caller's
        # settings), plus what the start_*/use_* methods below add or take away.
        self.env: dict[str, str] = {
            # One secret key for every child (the receiver checks the URLs workers make),
            # unless the caller brought one.
            "FALBRIDGE_SECRET_KEY": secrets.token_urlsafe(32),
            **os.environ,
            "FALBRIDGE_VAR_DIR": str(run_dir / "var"),
            "PYTHONUNBUFFERED": "1",  # a log shows what happened up to a SIGKILL
        }
        self.procs: list[ProcessGroup] = []
        self.pg: PostgresCluster | None = None
        self.redis: RedisServer | None = None
        self.database_url = ""
        self.redis_url = ""
        self.sandbox_url: str | None = None
        self.receiver: ProcessGroup | None = None
        self.receiver_url = ""
        self.proxy: NginxProxy | None = None
        self.proxy_url = ""

    # -- the children's environment ------------------------------------------------------

    def set_env(self, values: Mapping[str, str | None]) -> None:
        """Set (None: remove) variables for the children started from now on."""
        for name, value in values.items():
            if value is None:
                self.env.pop(name, None)
            else:
                self.env[name] = value

    def use_fake_fal(self, key: str) -> None:
        """Children sign requests with `key`, never with a real fal credential from this shell."""
        self.set_env({"FAL_KEY": key, **dict.fromkeys(REAL_FAL_VARIABLES)})

    # -- services --------------------------------------------------------------------------

    def start_postgres(
        self, database: str = "falbridge", *, durable: bool = False, max_connections: int = 300
    ) -> str:
        """A throwaway cluster (see PostgresCluster for `durable`) with a migrated database."""
        pg_bin = find_pg_bin()
        if pg_bin is None:
            raise RuntimeError(
                "PostgreSQL server binaries not found (pg_ctl on PATH or under /usr/lib/postgresql/*/bin)"
            )
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.pg = PostgresCluster(pg_bin, max_connections, durable=durable).start()
        return self.use_database(self.pg.create_database(database))

    def use_database(self, url: str | None = None) -> str:
        """Migrate `url` (None: a SQLite file in the run directory) and hand it to the children."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.database_url = url or f"sqlite:///{self.run_dir / 'falbridge.db'}"
        upgrade(self.database_url)
        self.set_env({"DATABASE_URL": self.database_url})
        return self.database_url

    def start_redis(self) -> str:
        """redis-server on TCP with its data under the run directory (restartable)."""
        self.redis = RedisServer(self.run_dir / "redis").start()
        return self.use_redis(self.redis.url)

    def use_redis(self, url: str) -> str:
        """An already running Redis instead of our own."""
        self.redis_url = url
        self.set_env({"REDIS_URL": url})
        return url

    def restart_redis(self) -> None:
        """SIGKILL redis-server and start it on the same port and data: clients keep their URL."""
        if self.redis is None:
            raise RuntimeError("this stack did not start the Redis it uses")
        self.redis.restart()

    # -- processes -------------------------------------------------------------------------

    def spawn(
        self, name: str, argv: Iterable[str], *, log: str | None = None, env: Mapping[str, str] | None = None
    ) -> ProcessGroup:
        """Start `argv` with the children's environment (plus `env`), logging to
        `<run_dir>/<log or name>.log`; `stop()` will reap it."""
        path = self.run_dir / f"{log or name}.log"
        launch = Launch(name, tuple(argv), path, {**self.env, **(env or {})}, self.cwd)
        return self._track(ProcessGroup.start(launch))

    def _track(self, proc: ProcessGroup) -> ProcessGroup:
        self.procs.append(proc)
        return proc

    def kill(self, proc: ProcessGroup) -> None:
        """SIGKILL `proc`'s group and forget it: its group id must not be signalled again."""
        proc.kill()
        if proc in self.procs:
            self.procs.remove(proc)

    def start_sandbox(
        self,
        *,
        port: int | None = None,
        latency_s: float = 0.0,
        concurrency: int = 64,
        seed: int | None = None,
        retention_s: float | None = None,
        faults: Mapping[str, Any] | None = None,
        fal_key: str = SANDBOX_FAL_KEY,
    ) -> ProcessGroup:
        """The sandbox as fal: the children started afterwards submit to it with `fal_key`
        and trust its signing key; they may fetch its files, which it serves on loopback."""
        port = port or free_port()
        args = ["--port", str(port), "--latency", str(latency_s), "--concurrency", str(concurrency)]
        if seed is not None:
            args += ["--seed", str(seed)]
        if retention_s is not None:
            args += ["--retention", str(retention_s)]
        if faults:
            args += ["--faults", json.dumps(dict(faults))]
        args += ["--user-id", SANDBOX_USER_ID]
        proc = self.spawn("sandbox", python_module("falbridge.sandbox", *args))
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/.well-known/jwks.json", proc)
        self.sandbox_url = url
        self.use_fake_fal(fal_key)
        self.set_env(
            {
                "FAL_QUEUE_URL": url,
                "FAL_JWKS_URL": f"{url}/.well-known/jwks.json",
                "FAL_WEBHOOK_USER_ID": SANDBOX_USER_ID,  # the receiver pins it, as in production
                "FALBRIDGE_FETCH_ALLOW_PRIVATE": "1",
            }
        )
        return proc

    def start_receiver(self, port: int | None = None, *, workers: int | None = None) -> ProcessGroup:
        """`falbridge serve` (gunicorn; `workers` None keeps its default). With the sandbox
        as fal, its callbacks come here: PUBLIC_BASE_URL says so to the workers started
        afterwards (with the real fal it stays the caller's public URL, a tunnel)."""
        port = port or free_port()
        self.receiver_url = f"http://127.0.0.1:{port}"
        if self.sandbox_url is not None:
            self.set_env({"PUBLIC_BASE_URL": self.receiver_url})
        args = ["serve", "--port", str(port)] + (["--workers", str(workers)] if workers else [])
        self.receiver = self.spawn("receiver", python_module("falbridge", *args))
        wait_http(f"{self.receiver_url}/healthz", self.receiver)
        return self.receiver

    def restart_receiver(self) -> ProcessGroup:
        """SIGKILL the receiver's group and start it again: same port, same environment."""
        if self.receiver is None:
            raise RuntimeError("no receiver was started")
        launch = self.receiver.launch
        self.kill(self.receiver)
        self.receiver = self._track(ProcessGroup.start(launch))
        wait_http(f"{self.receiver_url}/healthz", self.receiver)
        return self.receiver

    def start_proxy(self, port: int | None = None) -> ProcessGroup:
        """nginx in front of the receiver, configured from the template docker-compose uses
        (falbridge/devstack/nginx.conf.template): clients that trickle a request cost the
        receiver nothing. With the sandbox as fal, its callbacks now come through nginx."""
        if self.receiver is None:
            raise RuntimeError("start the receiver before the proxy in front of it")
        binary = find_nginx()
        if binary is None:
            raise RuntimeError(
                "nginx not found (on PATH or /usr/sbin/nginx; on Debian: apt-get install nginx)"
            )
        upstream = self.receiver_url.removeprefix("http://")
        self.proxy = NginxProxy(self.run_dir / "nginx", port or free_port(), upstream)
        self.proxy.write()
        proc = self.spawn("nginx", self.proxy.argv(binary))
        wait_http(f"{self.proxy.url}/healthz", proc)
        self.proxy_url = self.proxy.url
        if self.sandbox_url is not None:
            self.set_env({"PUBLIC_BASE_URL": self.proxy_url})
        return proc

    def start_worker(
        self,
        *,
        concurrency: int,
        pool: str = "prefork",
        name: str = "worker",
        log: str | None = None,
        wait: bool = True,
    ) -> ProcessGroup:
        """`falbridge worker`; with `wait`, return once it consumes (`wait_worker`)."""
        args = ["worker", "--pool", pool, "--concurrency", str(concurrency), "--loglevel", "info"]
        proc = self.spawn(name, python_module("falbridge", *args), log=log)
        if wait:
            wait_worker(proc)
        return proc

    def start_beat(self, *, wait: bool = True) -> ProcessGroup:
        """`falbridge beat`: the sweeper every FALBRIDGE_RECONCILE_INTERVAL_S (as set in `env`)."""
        schedule = self.run_dir / "beat-schedule"
        proc = self.spawn("beat", python_module("falbridge", "beat", "--schedule", str(schedule)))
        if wait:
            wait_log(proc, BEAT_READY)
        return proc

    # -- teardown --------------------------------------------------------------------------

    def stop(self, *, keep_redis_data: bool = True) -> None:
        """Reap every process (last started first), then Redis, then PostgreSQL, keeping
        its log in the run directory. Ctrl-C and SIGTERM wait until it is done."""
        with signals_held():
            try:
                stop_all(list(reversed(self.procs)))
                self.procs.clear()
            finally:
                try:
                    if self.redis is not None:
                        self.redis.kill()  # nothing to save: its data is only this run's
                        self.redis.stop(remove=not keep_redis_data)
                finally:
                    self._stop_postgres()

    def _stop_postgres(self) -> None:
        if self.pg is None:
            return
        # Pooled connections of this process would hold the cluster's shutdown up.
        for url in (self.database_url, self.pg.url()):
            get_engine(url).dispose()
        self.pg.stop(keep_log=self.run_dir / "postgresql.log")
        self.pg = None


def wait_worker(proc: ProcessGroup, timeout: float = 60.0) -> None:
    """Return once a Celery worker (`falbridge worker` or any at INFO) consumes."""
    wait_log(proc, WORKER_READY, timeout)
