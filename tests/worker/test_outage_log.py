"""A broker outage is one warning per 30 s per process, not a line per retry."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading

import pytest

from falbridge.devstack.processes import wait_until
from falbridge.devstack.services import RedisServer
from falbridge.worker.outage_log import BrokerOutageFilter


def _record(message: str, exc: BaseException | None = None) -> logging.LogRecord:
    exc_info = (type(exc), exc, None) if exc is not None else None
    return logging.LogRecord("celery.worker.consumer", logging.ERROR, __file__, 1, message, (), exc_info)


def test_one_line_per_window_counting_what_it_held_back():
    now = [0.0]
    outage = BrokerOutageFilter(window_s=30, clock=lambda: now[0])
    first = _record(
        "consumer: Cannot connect to redis://...: Connection refused.\nTrying again in 2.00 seconds"
    )
    assert outage.filter(first) and first.getMessage().count("\n") == 0 and first.levelname == "WARNING"
    assert not any(outage.filter(_record("consumer: Cannot connect to redis")) for _ in range(50))
    assert not outage.filter(_record("channel close failed", ConnectionRefusedError(111, "refused")))
    now[0] = 30.0
    again = _record("consumer: Cannot connect to redis://...")
    assert outage.filter(again) and "51 more such messages in the last 30s" in again.getMessage()
    assert again.exc_info is None


def test_other_records_pass_untouched():
    outage = BrokerOutageFilter(clock=lambda: 0.0)
    other = _record("submit 123: submitted")
    assert outage.filter(other) and other.getMessage() == "submit 123: submitted"
    assert outage.filter(_record("Cannot connect to redis")) and outage.filter(other)


@pytest.mark.slow
def test_a_worker_logs_a_broker_outage_in_a_line_or_two(tmp_path):
    redis = RedisServer(tmp_path / "redis").start()
    env = {
        **os.environ,
        "REDIS_URL": redis.url,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite'}",
        "FAL_KEY": "k:s",
        "FALBRIDGE_SECRET_KEY": "s" * 43,
        "FALBRIDGE_VAR_DIR": str(tmp_path / "var"),
    }
    log = tmp_path / "worker.log"
    with open(log, "wb") as out:
        worker = subprocess.Popen(
            [sys.executable, "-m", "falbridge", "worker", "--pool", "prefork", "--concurrency", "2"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until(lambda: b" ready." in log.read_bytes(), worker, what="the worker to be ready", timeout=60)
        ready = len(log.read_bytes().splitlines())
        redis.kill()
        with _Refuser(redis.port) as attempts:
            # Celery retries after 2, 4, 6 s ... and logged each retry, tracebacks and all.
            wait_until(lambda: attempts.count >= 4, worker, what="four reconnection attempts", timeout=60)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(60)
        redis.stop(remove=True)
    lines = log.read_bytes().splitlines()[ready:]
    outage_lines = [line for line in lines if b"broker" in line.lower() or b"redis" in line.lower()]
    said = b"\n".join(lines).decode(errors="replace")
    assert [line for line in outage_lines if b"broker unreachable" in line] == outage_lines[:1], said
    assert len(outage_lines) <= 2, said


class _Refuser:
    """Where Redis was: accepts each connection and closes it at once, counting them."""

    def __init__(self, port: int) -> None:
        self.count = 0
        self._server = socket.create_server(("127.0.0.1", port), reuse_port=True)
        self._server.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._server.accept()
            except TimeoutError:
                continue
            self.count += 1
            conn.close()

    def __enter__(self) -> _Refuser:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self._server.close()
