"""Run the sandbox in-process: `SandboxServer(SandboxConfig(...)).start()`.

The HTTP side is werkzeug's threaded dev server with our own request runner: werkzeug's
runner answers every request with "Connection: close", and clients that open a fresh
TCP connection per call exhaust loopback ports in long chaos runs. Ours reads each
request body completely before dispatch, so the stream stays aligned for the next
request on the same connection.
"""

from __future__ import annotations

import contextlib
import io
import logging
import socket
import threading
from typing import Any

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from falbridge.sandbox.config import Faults, SandboxConfig
from falbridge.sandbox.core import Sandbox
from falbridge.sandbox.http_api import SandboxApp

__all__ = ["Faults", "SandboxConfig", "SandboxServer"]

_log = logging.getLogger("falbridge.sandbox.http")
_MAX_BODY_BYTES = 64 * 1024 * 1024


class _Connections:
    """Client sockets between requests, so stop() can end idle keep-alive connections
    at once while requests still being answered finish first."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle: set[socket.socket] = set()
        self.closing = False

    def idle(self, conn: socket.socket) -> bool:
        """Park a connection between requests; False means: close it instead."""
        with self._lock:
            if not self.closing:
                self._idle.add(conn)
                return True
        _shutdown(conn)
        return False

    def busy(self, conn: socket.socket) -> None:
        with self._lock:
            self._idle.discard(conn)

    def close_all(self) -> None:
        with self._lock:
            self.closing = True
            idle_now = list(self._idle)
            self._idle.clear()
        for conn in idle_now:
            _shutdown(conn)


def _shutdown(conn: socket.socket) -> None:
    with contextlib.suppress(OSError):
        conn.shutdown(socket.SHUT_RDWR)


class _KeepAliveHandler(WSGIRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 120  # idle keep-alive connections are dropped after this many seconds

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._connections: _Connections = self.server.sandbox_connections  # type: ignore[attr-defined]
        self._connections.idle(self.connection)

    def finish(self) -> None:
        self._connections.busy(self.connection)
        super().finish()

    def run_wsgi(self) -> None:
        self._connections.busy(self.connection)
        try:
            self._run_one()
        finally:
            if not self.close_connection and not self._connections.idle(self.connection):
                self.close_connection = True

    def _run_one(self) -> None:
        if self.headers.get("Expect", "").lower().strip() == "100-continue":
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        environ = self.environ = self.make_environ()
        try:
            body = self._read_body(environ)
        except ConnectionError:
            self.close_connection = True
            return
        except (ValueError, OSError):  # bad Content-Length or broken chunked framing
            self.close_connection = True
            self._send(400, [("Content-Type", "application/json")], b'{"detail":"Bad request body"}')
            return
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        environ.pop("wsgi.input_terminated", None)
        captured: dict[str, Any] = {}

        def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            captured["status"], captured["headers"] = status, headers
            return lambda data: None  # the legacy write() callable; our app never uses it

        try:
            chunks = self.server.app(environ, start_response)
            try:
                payload = b"".join(chunks)
            finally:
                getattr(chunks, "close", lambda: None)()
        except ConnectionError:
            self.close_connection = True  # the app dropped the connection on purpose
            return
        except Exception:
            _log.exception("unhandled error in %s %s", self.command, self.path)
            self.close_connection = True
            self._send(500, [("Content-Type", "application/json")], b'{"detail":"Internal Server Error"}')
            return
        code = int(captured["status"].split(None, 1)[0])
        self._send(code, captured["headers"], payload)

    def _read_body(self, environ: dict[str, Any]) -> bytes:
        if environ.get("wsgi.input_terminated"):  # chunked request
            body: bytes = environ["wsgi.input"].read()
            return body
        length = int(environ.get("CONTENT_LENGTH") or 0)
        if length < 0 or length > _MAX_BODY_BYTES:
            raise ValueError("bad Content-Length")
        return self.rfile.read(length) if length else b""

    def _send(self, code: int, headers: list[tuple[str, str]], payload: bytes) -> None:
        head_only = self.command == "HEAD"
        if self._connections.closing:
            self.close_connection = True
        self.send_response(code)
        for key, value in headers:
            if key.lower() == "content-length" and not head_only:
                continue
            self.send_header(key, value)
        if not head_only:
            self.send_header("Content-Length", str(len(payload)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if not head_only and payload:
            self.wfile.write(payload)

    def log_request(self, code: Any = "-", size: Any = "-") -> None:
        pass  # one line per request would drown test output

    def log(self, type: str, message: str, *args: Any) -> None:
        level = logging.ERROR if type == "error" else logging.DEBUG
        _log.log(level, message, *args)


class SandboxServer:
    def __init__(self, config: SandboxConfig | None = None) -> None:
        self.config = config or SandboxConfig()
        self.core: Sandbox | None = None
        self._http: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._port: int | None = None  # kept after stop() so url stays printable

    def start(self) -> SandboxServer:
        if self._http is not None:
            raise RuntimeError("sandbox server already started")
        host, port = self.config.host, self.config.port
        # Bind here: on failure werkzeug prints to stderr and calls sys.exit; we want an OSError.
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        listener = socket.create_server((host, port), family=family, backlog=512)
        core = Sandbox(self.config)
        try:
            http = make_server(
                host,
                port,
                SandboxApp(core),
                threaded=True,
                request_handler=_KeepAliveHandler,
                fd=listener.fileno(),
            )
        except BaseException:
            core.stop()
            raise
        finally:
            listener.close()  # werkzeug works on its own duplicate of the descriptor
        http.sandbox_connections = _Connections()  # type: ignore[attr-defined]
        core.start()
        self.core, self._http, self._port = core, http, http.server_address[1]
        self._thread = threading.Thread(
            target=http.serve_forever, kwargs={"poll_interval": 0.05}, name="sandbox-http", daemon=True
        )
        self._thread.start()
        return self

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("sandbox server not started")
        return self._port

    @property
    def url(self) -> str:
        # A wildcard bind is reachable through loopback; print that instead of 0.0.0.0.
        host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(self.config.host, self.config.host)
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    @property
    def jwks_url(self) -> str:
        return f"{self.url}/.well-known/jwks.json"

    def stop(self) -> None:
        http, core = self._http, self.core
        if http is None or core is None:
            return
        http.shutdown()
        core.stop()  # wakes handlers parked in idle-waits and submit delays
        http.sandbox_connections.close_all()  # type: ignore[attr-defined]
        http.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._http = None

    def __enter__(self) -> SandboxServer:
        return self if self._http is not None else self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()
