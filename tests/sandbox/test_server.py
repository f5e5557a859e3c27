"""Starting and stopping the sandbox: in-process API and `python -m falbridge.sandbox`."""

from __future__ import annotations

import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from falbridge.sandbox.server import SandboxConfig, SandboxServer
from tests.plugins.sandbox import sandbox_test_config
from tests.sandbox.helpers import poll_until

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _first_line(process: subprocess.Popen, timeout: float) -> str:
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: lines.put(process.stdout.readline()), daemon=True).start()
    return lines.get(timeout=timeout)


def test_start_binds_a_free_loopback_port_and_stop_releases_it():
    server = SandboxServer(sandbox_test_config()).start()
    url = server.url
    assert url.startswith("http://127.0.0.1:") and server.port > 0
    assert server.jwks_url == f"{url}/.well-known/jwks.json"
    assert httpx.get(server.jwks_url, verify=False).status_code == 200

    server.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(server.jwks_url, verify=False)
    server.stop()  # stopping twice is harmless


def test_stop_does_not_wait_for_idle_keep_alive_clients():
    server = SandboxServer(sandbox_test_config()).start()
    client = httpx.Client(verify=False)
    client.get(server.jwks_url)  # leaves a pooled keep-alive connection open
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 3
    client.close()


def test_stop_wakes_a_pending_idle_wait():
    config = sandbox_test_config(latency_s=30)
    server = SandboxServer(config).start()
    httpx.post(f"{server.url}/acme/slow", json={}, headers={"Authorization": "Key k"}, verify=False)
    results: queue.Queue = queue.Queue()
    waiter = threading.Thread(
        target=lambda: results.put(
            httpx.get(
                f"{server.url}/_sandbox/idle", params={"timeout": 60}, verify=False, timeout=60
            ).status_code
        ),
        daemon=True,
    )
    waiter.start()
    poll_until(lambda: httpx.get(f"{server.url}/_sandbox", verify=False).json()["idle_waiters"], bool)
    started = time.monotonic()
    server.stop()
    waiter.join(10)
    assert time.monotonic() - started < 5
    assert results.get(timeout=1) == 408


def test_context_manager_and_explicit_port():
    port = _free_port()
    with SandboxServer(SandboxConfig(port=port)) as server:
        assert server.url == f"http://127.0.0.1:{port}"
        with pytest.raises(OSError):
            SandboxServer(SandboxConfig(port=port)).start()


def test_python_dash_m_sandbox_runs_until_sigterm():
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "falbridge.sandbox",
            "--port",
            str(port),
            "--latency",
            "0.01",
            "--seed",
            "7",
            "--user-id",
            "cli-user",
            "--faults",
            '{"drop": 0.5}',
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=PROJECT_ROOT,
    )
    try:
        line = _first_line(process, timeout=20)
        url = f"http://127.0.0.1:{port}"
        assert url in line and f"{url}/.well-known/jwks.json" in line
        assert httpx.get(f"{url}/_sandbox/faults", verify=False).json()["drop"] == 0.5
        config = httpx.get(f"{url}/_sandbox/config", verify=False).json()
        assert (config["user_id"], config["seed"], config["latency_s"]) == ("cli-user", 7, 0.01)
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=15)
    assert process.returncode == 0, stderr


def test_cli_rejects_unknown_fault_knobs():
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    result = subprocess.run(
        [sys.executable, "-m", "falbridge.sandbox", "--faults", '{"nope": 1}'],
        capture_output=True,
        text=True,
        env=env,
        cwd=PROJECT_ROOT,
        timeout=30,
    )
    assert result.returncode == 2
    assert "nope" in result.stderr
