"""A subscriber to outgoing webhooks: a real HTTP server on loopback, in a thread, that
records every request and answers from a script (status, headers, body, a hang until
released, a dropped connection, a slow or never-ending answer, bytes that are no HTTP),
the default being 200."""

from __future__ import annotations

import http.server
import socket
import socketserver
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.plugins.pipeline import TEST_SECRET_KEY
from tests.plugins.sandbox import ReceivedRequest, Recorder


@dataclass(frozen=True)
class Answer:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b'{"ok":true}'
    hang: bool = False  # hold the answer until the subscriber is closed (a timeout)
    drop: bool = False  # close the connection without answering
    # A slow subscriber: it takes pause_s before answering and between the `parts` writes
    # its body is sent in (what it does, not a wait of the test's).
    pause_s: float = 0.0
    parts: int = 1
    stall: bool = False  # promise more body than it sends, then hold the connection until released
    raw: bytes | None = None  # sent as it is instead of an answer (a subscriber that speaks no HTTP)


# What a stalled answer promises beyond its body, and never sends.
STALLED_BYTES = 1_000_000


def _pieces(body: bytes, parts: int) -> list[bytes]:
    size = -(-len(body) // parts) or 1
    return [body[i : i + size] for i in range(0, len(body), size)]


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def server_bind(self) -> None:
        socketserver.TCPServer.server_bind(self)  # no reverse DNS lookup
        self.server_name, self.server_port = self.server_address[:2]

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a sender that timed out closed its end first


class Subscriber(Recorder):
    name = "subscriber"

    def __init__(self) -> None:
        super().__init__()
        self._script: list[Answer] = []
        self._release = threading.Event()
        self._server = _Server(("127.0.0.1", 0), self._handler())
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        ).start()
        self.base_url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self.url = self.base_url + "/hooks"

    def answer(self, *answers: Answer | int) -> None:
        """The next requests get these answers (a bare number is that status), later ones 200."""
        with self._cond:
            self._script = [a if isinstance(a, Answer) else Answer(a) for a in answers]

    def release(self) -> None:
        """Let every hanging answer go."""
        self._release.set()

    def close(self) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()

    def _take(self, handler: http.server.BaseHTTPRequestHandler) -> Answer:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        with self._cond:
            answer = self._script.pop(0) if self._script else Answer()
            headers = {key.lower(): value for key, value in handler.headers.items()}
            self._received.append(
                ReceivedRequest(
                    handler.command,
                    handler.path,
                    headers,
                    body,
                    time.time(),
                    answer.status,
                    handler.client_address[:2],
                )
            )
            self._cond.notify_all()
        return answer

    def _handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        subscriber = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def do_POST(self) -> None:
                answer = subscriber._take(self)
                if answer.hang:
                    subscriber._release.wait()
                if answer.raw is not None:
                    self.close_connection = True
                    self.wfile.write(answer.raw)
                    return
                if answer.drop:
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                time.sleep(answer.pause_s)
                self.send_response(answer.status)
                for name, value in {"Content-Type": "application/json", **answer.headers}.items():
                    self.send_header(name, value)
                promised = len(answer.body) + (STALLED_BYTES if answer.stall else 0)
                self.send_header("Content-Length", str(promised))
                self.end_headers()
                for n, piece in enumerate(_pieces(answer.body, answer.parts)):
                    if n:
                        time.sleep(answer.pause_s)
                    self.wfile.write(piece)  # unbuffered: each piece is its own write
                if answer.stall:
                    self.close_connection = True
                    subscriber._release.wait()

            do_GET = do_POST

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


@pytest.fixture
def subscriber() -> Iterator[Subscriber]:
    server = Subscriber()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def notifying(db_url, subscriber, monkeypatch):
    """Outgoing webhooks in this process, to the loopback subscriber: loopback allowed,
    the schedule shrunk ten-thousandfold, the sweeper's grace at zero, and no broker (new
    deliveries wait for a `deliver` call or a sweep, as they would with Redis down)."""
    from falbridge.models import outbox

    monkeypatch.setenv("FALBRIDGE_NOTIFY_ALLOWED_NETWORKS", "127.0.0.0/8")
    monkeypatch.setenv("FALBRIDGE_SECRET_KEY", TEST_SECRET_KEY)
    monkeypatch.setenv("FALBRIDGE_NOTIFY_SCHEDULE_SCALE", "0.0001")
    monkeypatch.setenv("FALBRIDGE_DELIVERY_GRACE_S", "0")
    monkeypatch.setenv("FALBRIDGE_NOTIFY_TIMEOUT_S", "2")
    previous = outbox.set_dispatcher(None)
    try:
        yield subscriber
    finally:
        outbox.set_dispatcher(previous)
