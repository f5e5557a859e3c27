"""Fixtures for tests that need a fal stand-in: the sandbox server and a webhook sink.

- `sandbox_server` (session): one SandboxServer with test-scaled timings.
- `sandbox` (function): resets that server and yields a `SandboxHandle`.
- `webhook_sink` (function): a throwaway HTTP receiver recording every request.
- `verify_fal_signature(...)`: checks a received webhook against a JWKS with
  `cryptography` only, independent of the sandbox's own signing code.
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import json
import socket
import socketserver
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from falbridge.sandbox.server import SandboxConfig, SandboxServer

__all__ = [
    "TEST_FAL_KEY",
    "ReceivedRequest",
    "SandboxHandle",
    "WebhookSink",
    "sandbox",
    "sandbox_server",
    "sandbox_test_config",
    "verify_fal_signature",
    "webhook_sink",
]

TEST_FAL_KEY = "sandbox-key-id:sandbox-key-secret"


def sandbox_test_config(**overrides: Any) -> SandboxConfig:
    settings: dict[str, Any] = {
        "latency_s": 0.01,
        "delivery_backoff_s": [0.05, 0.1, 0.2],
        "delivery_timeout_s": 2.0,
        "duplicate_spacing_s": 0.02,
        "fetch_timeout_s": 2.0,
    }
    settings.update(overrides)
    return SandboxConfig(**settings)


class SandboxHandle:
    """Test-side view of a running sandbox: queue client plus admin calls."""

    def __init__(self, server: SandboxServer) -> None:
        self.server = server
        self.url = server.url
        self.jwks_url = server.jwks_url
        self.auth_headers = {"Authorization": f"Key {TEST_FAL_KEY}"}
        # verify=False: plain-HTTP loopback only, and it skips loading the CA bundle
        # (~0.1 s per client), which adds up over hundreds of tests.
        self._admin = httpx.Client(base_url=self.url, timeout=30.0, verify=False)

    def client(self, **kwargs: Any) -> httpx.Client:
        """An httpx client already carrying the Authorization header."""
        kwargs.setdefault("timeout", 10.0)
        kwargs.setdefault("verify", False)
        return httpx.Client(headers=self.auth_headers, **kwargs)

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._admin.request(method, f"/_sandbox/{path}", **kwargs)
        response.raise_for_status()
        return response.json()

    def reset(self) -> None:
        self._call("POST", "reset")

    def set_faults(self, **knobs: Any) -> dict[str, Any]:
        return self._call("PUT", "faults", json=knobs)

    def faults(self) -> dict[str, Any]:
        return self._call("GET", "faults")

    def set_config(self, **settings: Any) -> dict[str, Any]:
        return self._call("PUT", "config", json=settings)

    def rotate_keys(self, keep_old: bool = False) -> dict[str, Any]:
        return self._call("POST", "keys/rotate", json={"keep_old": keep_old})

    def jwks(self) -> dict[str, Any]:
        return self._admin.get("/.well-known/jwks.json").json()

    def ground_truth(self) -> dict[str, Any]:
        return self._call("GET", "requests")

    def request(self, request_id: str) -> dict[str, Any]:
        return self._call("GET", f"requests/{request_id}")

    def wait_idle(self, timeout: float = 10.0) -> None:
        response = self._admin.get("/_sandbox/idle", params={"timeout": timeout}, timeout=timeout + 5)
        if response.status_code != 200:
            raise TimeoutError(f"sandbox still busy after {timeout}s: {self._call('GET', '')}")

    def close(self) -> None:
        self._admin.close()


@pytest.fixture(scope="session")
def sandbox_server() -> Iterator[SandboxServer]:
    with SandboxServer(sandbox_test_config()) as server:
        yield server


@pytest.fixture
def sandbox(sandbox_server: SandboxServer) -> Iterator[SandboxHandle]:
    handle = SandboxHandle(sandbox_server)
    handle.reset()
    try:
        yield handle
    finally:
        handle.close()


@dataclass(frozen=True)
class ReceivedRequest:
    method: str
    path: str
    headers: dict[str, str]  # keys lower-cased
    body: bytes
    received_at: float
    answered: int  # the status code the sink replied with
    peer: tuple[str, int] | None = None  # the sender's address and port (one per connection)

    def json(self) -> Any:
        return json.loads(self.body)


class _SinkServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # senders keep idle keep-alive connections open; don't wait for them

    def server_bind(self) -> None:
        # HTTPServer.server_bind does a reverse DNS lookup (getfqdn) that can take ~0.2 s.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A sender that gave up (timeout) closed its end before the answer was written.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class Recorder:
    """What a recording test server shares: the requests it got, and a wait for them."""

    name = "recorder"

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._received: list[ReceivedRequest] = []

    @property
    def received(self) -> list[ReceivedRequest]:
        with self._cond:
            return list(self._received)

    def wait_for(self, count: int, timeout: float = 10.0) -> list[ReceivedRequest]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self._received) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"{self.name} got {len(self._received)} requests, expected {count}")
                self._cond.wait(remaining)
            return list(self._received)


class WebhookSink(Recorder):
    """Local HTTP receiver: records requests, answers with a scripted status sequence.

    `respond_with(500, 500)` makes the next two requests get 500, later ones the default
    (200). `stall_for(seconds)` holds every answer that long (to trip client timeouts).
    `serve_file(path, data)` makes GET `path` return those bytes (e.g. input images);
    such fetches are counted in `file_hits`, not in `received`.
    """

    name = "sink"

    def __init__(self, default_status: int = 200) -> None:
        super().__init__()
        self.default_status = default_status
        self._script: list[int] = []
        self._stall_s = 0.0
        self._release = threading.Event()
        self._files: dict[str, tuple[bytes, str]] = {}
        self.file_hits: list[str] = []
        self._server = _SinkServer(("127.0.0.1", 0), self._handler_class())
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/webhook"
        self.base_url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def respond_with(self, *statuses: int) -> None:
        with self._cond:
            self._script = list(statuses)

    def serve_file(self, path: str, data: bytes, content_type: str = "application/octet-stream") -> str:
        self._files[path] = (data, content_type)
        return self.base_url + path

    def stall_for(self, seconds: float) -> None:
        self._stall_s = seconds

    def close(self) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()

    def _record(self, handler: http.server.BaseHTTPRequestHandler) -> int:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        if self._stall_s:
            self._release.wait(self._stall_s)
        with self._cond:
            status = self._script.pop(0) if self._script else self.default_status
            headers = {key.lower(): value for key, value in handler.headers.items()}
            self._received.append(
                ReceivedRequest(handler.command, handler.path, headers, body, time.time(), status)
            )
            self._cond.notify_all()
        return status

    def _handler_class(self) -> type[http.server.BaseHTTPRequestHandler]:
        sink = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                # Headers and body go out in separate writes; without this, Nagle plus
                # delayed ACKs add ~40 ms to every answer on a kept-alive connection.
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def _answer(self) -> None:
                served = sink._files.get(self.path) if self.command == "GET" else None
                if served is not None:
                    sink.file_hits.append(self.path)
                    status, (payload, content_type) = 200, served
                else:
                    status, payload, content_type = sink._record(self), b'{"ok":true}', "application/json"
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_POST = do_PUT = do_GET = _answer

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


@pytest.fixture
def webhook_sink() -> Iterator[WebhookSink]:
    sink = WebhookSink()
    try:
        yield sink
    finally:
        sink.close()


def verify_fal_signature(received: ReceivedRequest, jwks: dict[str, Any]) -> bool:
    """True if any JWKS key verifies the fal webhook signature (§3.2) of `received`."""
    headers = received.headers
    try:
        message = "\n".join(
            [
                headers["x-fal-webhook-request-id"],
                headers["x-fal-webhook-user-id"],
                headers["x-fal-webhook-timestamp"],
                hashlib.sha256(received.body).hexdigest(),
            ]
        ).encode("utf-8")
        signature = bytes.fromhex(headers["x-fal-webhook-signature"])
    except (KeyError, ValueError):
        return False
    for jwk in jwks.get("keys", []):
        x = jwk["x"]
        public = Ed25519PublicKey.from_public_bytes(base64.urlsafe_b64decode(x + "=" * (-len(x) % 4)))
        try:
            public.verify(signature, message)
            return True
        except InvalidSignature:
            continue
    return False
