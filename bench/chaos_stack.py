"""The processes of a chaos run, each a real OS process as in production.

PostgreSQL (or SQLite), Redis on TCP with an append-only file, the sandbox as fal, the
receiver under gunicorn, Celery workers and Celery beat. Every child starts in its own
session, so one `killpg` takes down a worker with its prefork children, or gunicorn with
its workers, the way an orchestrator's SIGKILL would. `stop()` always reaps all of them.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx

from bench.chaos_config import FAKE_FAL_KEY, FAULTS, SANDBOX_RUNTIME, Timings
from bench.common import wait_answering
from falbridge.devstack.services import PostgresCluster, RedisServer, find_pg_bin, free_port

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class StackConfig:
    run_dir: Path
    database: str = "postgresql"
    seed: int = 1
    workers: int = 2
    worker_concurrency: int = 2
    sandbox_latency_s: float = 0.2
    sandbox_concurrency: int = 64
    timings: Timings = field(default_factory=Timings)
    faults: dict = field(default_factory=lambda: dict(FAULTS))


class Child:
    """One spawned process group, logging to `<run_dir>/<log>.log`."""

    def __init__(self, name: str, popen: subprocess.Popen, log: Path, log_offset: int = 0):
        self.name, self.popen, self.log, self.log_offset = name, popen, log, log_offset
        self.started = time.monotonic()
        self.ready = False

    def alive(self) -> bool:
        return self.popen.poll() is None

    def signal(self, sig: int) -> None:
        try:
            os.killpg(self.popen.pid, sig)
        except ProcessLookupError:
            pass  # already gone, and so is its group

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        self.popen.wait(10)


class ChaosStack:
    def __init__(self, config: StackConfig):
        self.config = config
        self.run_dir = config.run_dir
        self.children: list[Child] = []
        self.workers: list[Child] = []
        self.receiver: Child | None = None
        self.pg: PostgresCluster | None = None
        self.redis: RedisServer | None = None
        self.database_url = ""
        self.sandbox_url = ""
        self.receiver_url = ""
        self._worker_serial = 0
        # The jobs API wants a bearer token (webhooks/auth.py); a fresh one per run.
        self.api_token = secrets.token_urlsafe(32)

    # -- services ------------------------------------------------------------------

    def start(self) -> ChaosStack:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.database_url = self._start_database()
        self.redis = RedisServer(self.run_dir / "redis").start()
        self.sandbox_url = f"http://127.0.0.1:{free_port()}"
        self.receiver_url = f"http://127.0.0.1:{free_port()}"
        self.env = self._child_env()
        self._start_sandbox()
        self.start_receiver()
        for _ in range(self.config.workers):
            self.start_worker()
        self.spawn(
            "beat",
            "celery",
            "-A",
            "falbridge.worker.celery_app:celery_app",
            "beat",
            "--loglevel",
            "INFO",
            "--schedule",
            str(self.run_dir / "beat-schedule"),
        )
        for worker in self.workers:  # submit only once the pipeline can move
            self.wait_worker_ready(worker)
        return self

    def _start_database(self) -> str:
        from falbridge.models.migrate import upgrade

        if self.config.database == "postgresql":
            pg_bin = find_pg_bin()
            if pg_bin is None:
                raise RuntimeError("PostgreSQL server binaries not found")
            self.pg = PostgresCluster(pg_bin, max_connections=400).start()
            url = self.pg.create_database("falbridge_chaos")
        else:
            url = f"sqlite:///{self.run_dir / 'falbridge.db'}"
        upgrade(url)
        return url

    def _child_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(self.config.timings.env())
        env.update(
            {
                "DATABASE_URL": self.database_url,
                "REDIS_URL": self.redis.url,
                "FAL_QUEUE_URL": self.sandbox_url,
                "FAL_KEY": FAKE_FAL_KEY,
                "FAL_JWKS_URL": f"{self.sandbox_url}/.well-known/jwks.json",
                "PUBLIC_BASE_URL": self.receiver_url,
                "FALBRIDGE_API_TOKENS": self.api_token,
                "FALBRIDGE_SUBMIT_MAX_RETRIES": "8",  # production's, whatever this shell has
                "FALBRIDGE_VAR_DIR": str(self.run_dir / "var"),
                "PYTHONUNBUFFERED": "1",
            }
        )
        for name in ("FAL_KEY_ID", "FAL_KEY_SECRET", "FAL_WEBHOOK_USER_ID", "FALBRIDGE_API_AUTH"):
            env.pop(name, None)  # never a real key, never a filter the sandbox won't match
        return env

    def spawn(self, name: str, *args: str, log: str | None = None) -> Child:
        path = self.run_dir / f"{log or name}.log"
        with open(path, "ab") as out:
            out.write(f"\n=== {time.strftime('%H:%M:%S')} start {name}: {' '.join(args)}\n".encode())
            out.flush()
            offset = out.tell()
            popen = subprocess.Popen(
                [sys.executable, "-m", *args],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
                cwd=ROOT,
                start_new_session=True,
            )
        child = Child(name, popen, path, offset)
        self.children.append(child)
        return child

    def _start_sandbox(self) -> None:
        port = self.sandbox_url.rsplit(":", 1)[1]
        proc = self.spawn(
            "sandbox",
            "falbridge.sandbox",
            "--port",
            port,
            "--seed",
            str(self.config.seed),
            "--latency",
            str(self.config.sandbox_latency_s),
            "--concurrency",
            str(self.config.sandbox_concurrency),
            "--retention",
            "86400",
            "--faults",
            json.dumps(self.config.faults),
        )
        wait_http(f"{self.sandbox_url}/.well-known/jwks.json", proc)
        httpx.put(f"{self.sandbox_url}/_sandbox/config", json=SANDBOX_RUNTIME, timeout=10).raise_for_status()

    def start_receiver(self) -> Child:
        port = self.receiver_url.rsplit(":", 1)[1]
        self.receiver = self.spawn("receiver", "falbridge", "serve", "--port", port, "--workers", "2")
        wait_http(f"{self.receiver_url}/healthz", self.receiver)
        return self.receiver

    def start_worker(self) -> Child:
        self._worker_serial += 1
        slot = (self._worker_serial - 1) % max(1, self.config.workers)
        worker = self.spawn(
            f"worker#{self._worker_serial}",
            "falbridge",
            "worker",
            "--pool",
            "prefork",
            "--concurrency",
            str(self.config.worker_concurrency),
            "--loglevel",
            "info",
            log=f"worker-{slot + 1}",
        )
        self.workers.append(worker)
        return worker

    def worker_ready(self, worker: Child) -> bool:
        # Celery logs "<node> ready." once it consumes; the log is the only signal that
        # needs no broker connection of our own. Read from this incarnation's marker on.
        if worker.ready:
            return True
        if not worker.alive():
            raise RuntimeError(f"{worker.name} exited with {worker.popen.returncode}; see {worker.log}")
        with open(worker.log, "rb") as f:
            f.seek(worker.log_offset)
            worker.ready = b" ready." in f.read()
        return worker.ready

    def wait_worker_ready(self, worker: Child, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.worker_ready(worker):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{worker.name} not ready within {timeout:.0f} s; see {worker.log}")
            time.sleep(0.1)

    # -- chaos -----------------------------------------------------------------------

    def kill_oldest_worker(self) -> tuple[str, str] | None:
        """SIGKILL the longest-lived worker's whole group and start a replacement.

        Only once every live worker is consuming (None until then): a worker takes a few
        seconds to boot here, and killing one that never took a task tests nothing.
        """
        live = [w for w in self.workers if w.alive()]
        if not live or not all(self.worker_ready(w) for w in live):
            return None
        victim = min(live, key=lambda w: w.started)
        victim.kill()
        self.workers.remove(victim)
        return victim.name, self.start_worker().name

    def restart_redis(self) -> None:
        self.redis.restart()

    def restart_receiver(self) -> None:
        self.receiver.kill()
        self.start_receiver()

    # -- teardown --------------------------------------------------------------------

    def stop(self) -> None:
        # A second Ctrl-C or SIGTERM must not cut the teardown short and orphan children:
        # hold both until it is done (they are delivered afterwards).
        held = {signal.SIGINT, signal.SIGTERM}
        main = threading.current_thread() is threading.main_thread()
        if main:
            signal.pthread_sigmask(signal.SIG_BLOCK, held)
        try:
            self._stop_all()
        finally:
            if main:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, held)

    def _stop_all(self) -> None:
        live = [c for c in self.children if c.alive()]
        for child in live:
            child.signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        for child in live:
            try:
                child.popen.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            child.signal(signal.SIGKILL)  # the group too: orphaned pool children included
            child.popen.wait(10)
        if self.redis is not None:
            self.redis.kill()
        if self.pg is not None:
            from falbridge.models.db import get_engine

            for url in (self.database_url, self.pg.url()):
                get_engine(url).dispose()
            self.pg.stop(keep_log=self.run_dir / "postgresql.log")

    def describe(self) -> dict:
        return {
            "database": self.config.database,
            "sandbox": self.sandbox_url,
            "receiver": self.receiver_url,
            "redis": self.redis.url if self.redis else None,
            "faults": self.config.faults,
            "sandbox_runtime": SANDBOX_RUNTIME,
            "timings": asdict(self.config.timings),
        }


def wait_http(url: str, child: Child, timeout: float = 60.0) -> None:
    wait_answering(url, child.popen, child.name, see=str(child.log), timeout=timeout)
