"""The processes `falbridge demo` runs: sandbox (as fal), receiver, Celery worker.

Each is a real child process talking over HTTP and Redis, as in production; the demo
process owns the embedded Redis and the SQLite file, and tears everything down at exit.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from falbridge import config
from falbridge.models.migrate import upgrade
from falbridge.worker import broker
from falbridge.worker.celery_app import ensure_broker, shutdown_embedded_broker


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, proc: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{' '.join(proc.args[2:4])} exited with {proc.returncode}; see its log")
        try:
            if httpx.get(url, timeout=1.0).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")


def wait_worker(proc: subprocess.Popen, timeout: float = 60.0) -> None:
    """Submit only once a worker answers, so the figures shown are the pipeline's, not boot time."""
    app = ensure_broker()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the Celery worker exited with {proc.returncode}; see worker.log")
        if app.control.ping(timeout=0.5):
            return
    raise RuntimeError(f"the Celery worker did not answer within {timeout:.0f} s")


def real_fal_configured() -> bool:
    fal = config.current().fal
    return fal.api_key() is not None and fal.public_base_url is not None


class Stack:
    def __init__(self, run_dir: Path):
        self.run_dir = run_dir
        self.procs: list[tuple[str, subprocess.Popen]] = []
        self.sandbox_url: str | None = None

    def spawn(self, name: str, *args: str) -> subprocess.Popen:
        log = open(self.run_dir / f"{name}.log", "ab")
        proc = subprocess.Popen(
            [sys.executable, "-m", *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=os.environ.copy(),
            start_new_session=True,
        )
        self.procs.append((name, proc))
        return proc

    def stop(self) -> None:
        for _name, proc in reversed(self.procs):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for _name, proc in reversed(self.procs):
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


@contextmanager
def demo_stack(run_dir: Path, *, real_fal: bool) -> Iterator[Stack]:
    """Configure this process's environment and start the children; stop them after."""
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    os.environ["FALBRIDGE_VAR_DIR"] = str(run_dir)
    os.environ.setdefault("DATABASE_URL", f"sqlite:///{run_dir / 'falbridge.db'}")
    stack = Stack(run_dir)
    started_redis = not config.current().broker.redis_url
    try:
        if started_redis:  # the children share this server
            os.environ["REDIS_URL"] = broker.embedded_redis_url(run_dir)
        config.use(config.Config.from_environ())
        upgrade()
        # With real fal, PUBLIC_BASE_URL (a tunnel) must forward to a known local port.
        receiver_port = config.current().demo.receiver_port if real_fal else free_port()
        if not real_fal:
            sandbox_port = free_port()
            stack.sandbox_url = f"http://127.0.0.1:{sandbox_port}"
            os.environ.update(
                FAL_QUEUE_URL=stack.sandbox_url,
                FAL_KEY="demo-key:demo-secret",
                FAL_JWKS_URL=f"{stack.sandbox_url}/.well-known/jwks.json",
                PUBLIC_BASE_URL=f"http://127.0.0.1:{receiver_port}",
            )
            # Loopback only, so the API can be tried with curl. Never with real fal: there a
            # tunnel makes the receiver's port public, and the API keeps its tokens.
            os.environ["FALBRIDGE_API_AUTH"] = "off"
            config.use(config.Config.from_environ())
            print("API authentication is OFF (embedded demo only)", flush=True)
            proc = stack.spawn(
                "sandbox",
                "falbridge.sandbox",
                "--port",
                str(sandbox_port),
                "--latency",
                "0.3",
                "--concurrency",
                "16",
            )
            wait_http(f"{stack.sandbox_url}/.well-known/jwks.json", proc)
        proc = stack.spawn("receiver", "falbridge", "serve", "--port", str(receiver_port), "--workers", "2")
        wait_http(f"http://127.0.0.1:{receiver_port}/healthz", proc)
        proc = stack.spawn("worker", "falbridge", "worker", "--pool", "threads", "--concurrency", "8")
        wait_worker(proc)
        yield stack
    finally:
        stack.stop()
        if started_redis:
            shutdown_embedded_broker()
