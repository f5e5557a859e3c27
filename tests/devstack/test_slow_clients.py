"""Slow clients cost nothing behind nginx (issue 11, point 3).

gunicorn's gthread worker hands a connection to a thread once its first byte arrives, and
the thread then blocks until the whole request is read: 50 clients that trickle a request
hold every thread of the default `falbridge serve` (2 workers x 8 threads), and /healthz
and fal's callbacks wait behind them. The same 50 against nginx in front (the template
docker-compose runs, falbridge/devstack/nginx.conf.template) cost gunicorn nothing.

Real processes on loopback: `falbridge serve` with its defaults on SQLite, a redis-server,
Debian's nginx (`apt-get install nginx`; .ci/run installs it), fal's callbacks signed with
the in-process sandbox's key.
"""

from __future__ import annotations

import http.client
import json
import select
import socket
import statistics
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from urllib.parse import urlsplit

import httpx
import pytest
from sqlalchemy import select as sql_select
from sqlalchemy.orm import Session

from falbridge.config import Config
from falbridge.devstack import proxy
from falbridge.devstack.stack import LocalStack
from falbridge.models.db import get_engine
from falbridge.models.tables import WebhookDelivery
from falbridge.sandbox.signing import sign

ROOT = Path(__file__).resolve().parents[2]
USER = "slow-clients-user"
API_TOKEN = "slow-clients-token-" + "x" * 16
SLOW_CLIENTS = 50
PROBES = 50
PROBE_TIMEOUT_S = 2.0
P99_LIMIT_S = 1.0

# Half trickle the request line and headers, half send their headers at once and then
# trickle the body; none ever finishes. Each gets one more byte every TRICKLE_EVERY_S.
SLOW_HEAD = b"POST /webhooks/fal?job=slow HTTP/1.1\r\nHost: falbridge\r\nX-Slow: "
TRICKLE_EVERY_S = 0.5


def slow_body_head() -> bytes:
    """Headers a callback's body is read after (the receiver refuses one without the
    signature headers before reading its body), announcing a body that never comes."""
    return (
        "POST /webhooks/fal HTTP/1.1\r\nHost: falbridge\r\n"
        "X-Fal-Webhook-Request-Id: slow\r\n"
        f"X-Fal-Webhook-User-Id: {USER}\r\n"
        f"X-Fal-Webhook-Timestamp: {int(time.time())}\r\n"
        "X-Fal-Webhook-Signature: c2xvdw\r\n"
        "Content-Type: application/json\r\nContent-Length: 65536\r\n\r\n"
    ).encode()


# -- slow clients and probes ----------------------------------------------------------------


class SlowClients:
    """`count` connections to `address`, each sending a request one byte at a time and never
    finishing it. A connection the server answers or closes is counted in `dropped` and
    opened again, so `count` stay open; `close()` ends them all."""

    def __init__(self, address: tuple[str, int], count: int) -> None:
        self.address = address
        self.count = count
        self.dropped = 0
        self.sent = 0
        self._conns: list[tuple[socket.socket, bytes, int]] = []  # socket, script, bytes sent
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._trickle, name="slow-clients", daemon=True)

    def _open(self, i: int) -> tuple[socket.socket, bytes, int]:
        sock = socket.create_connection(self.address, timeout=5)
        if i % 2 == 0:
            # SLOW_HEAD a byte at a time, then an endless header value.
            script, first = SLOW_HEAD, SLOW_HEAD[:1]
        else:
            # The headers at once, then the body a byte at a time.
            script = first = slow_body_head()
        sock.sendall(first)
        return sock, script, len(first)

    def __enter__(self) -> SlowClients:
        self._conns = [self._open(i) for i in range(self.count)]
        self._thread.start()
        return self

    def _trickle(self) -> None:
        while not self._stop.wait(TRICKLE_EVERY_S):
            for i, (sock, script, offset) in enumerate(self._conns):
                if self._stop.is_set():
                    return
                readable, _, _ = select.select([sock], [], [], 0)
                try:
                    if readable:  # answered (a 408, a 400) or closed: the server gave up on it
                        raise ConnectionResetError
                    sock.sendall(script[offset : offset + 1] if offset < len(script) else b"a")
                    self._conns[i] = (sock, script, offset + 1)
                    self.sent += 1
                except OSError:
                    sock.close()
                    self.dropped += 1
                    self._conns[i] = self._open(i)

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)
        for sock, _, _ in self._conns:
            sock.close()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


@dataclass
class Probes:
    """Latencies of the answered probes (seconds) and how many got no answer in time."""

    latencies: list[float] = field(default_factory=list)
    failures: int = 0

    def quantile(self, q: float) -> float:
        """Over every probe, a failed one counting as infinitely slow."""
        values = sorted(self.latencies) + [float("inf")] * self.failures
        return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")

    def summary(self) -> str:
        median = statistics.median(self.latencies) if self.latencies else float("nan")
        return (
            f"{len(self.latencies) + self.failures} probes: p50 {self.quantile(0.5) * 1000:.1f} ms, "
            f"p99 {self.quantile(0.99) * 1000:.1f} ms, answered median {median * 1000:.1f} ms, "
            f"{self.failures} without an answer within {PROBE_TIMEOUT_S:.0f} s"
        )


def probe_healthz(base_url: str, count: int, *, stop_after_failures: int | None = None) -> Probes:
    """GET /healthz `count` times, one new connection each (a new client), one after another."""
    parts = urlsplit(base_url)
    out = Probes()
    for _ in range(count):
        start = time.perf_counter()
        conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=PROBE_TIMEOUT_S)
        try:
            conn.request("GET", "/healthz")
            response = conn.getresponse()
            ok = response.status == 200 and response.read() == b'{"ok":true}\n'
        except OSError:  # the timeout included
            ok = False
        finally:
            conn.close()
        if ok:
            out.latencies.append(time.perf_counter() - start)
        else:
            out.failures += 1
            if stop_after_failures is not None and out.failures >= stop_after_failures:
                break
    return out


# -- signed callbacks -------------------------------------------------------------------


def signed_callback(sandbox_server, request_id: str) -> tuple[bytes, dict[str, str]]:
    body = json.dumps({"request_id": request_id, "status": "OK", "payload": {"images": []}}).encode()
    timestamp = str(int(time.time()))
    key = sandbox_server.core.keys.signing_key
    headers = {
        "X-Fal-Webhook-Request-Id": request_id,
        "X-Fal-Webhook-User-Id": USER,
        "X-Fal-Webhook-Timestamp": timestamp,
        "X-Fal-Webhook-Signature": sign(key, request_id, USER, timestamp, body),
        "Content-Type": "application/json",
    }
    return body, headers


def stored_delivery(stack: LocalStack, request_id: str) -> WebhookDelivery:
    with Session(get_engine(stack.database_url)) as session:
        return session.scalars(
            sql_select(WebhookDelivery).where(WebhookDelivery.request_id == request_id)
        ).one()


# -- the stack ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stack(tmp_path_factory, sandbox_server) -> Iterator[LocalStack]:
    """`falbridge serve` with its defaults (2 workers x 8 threads), nginx in front."""
    if proxy.find_nginx() is None:
        pytest.fail("nginx is needed (Debian: apt-get install nginx; .ci/run installs it)")
    stack = LocalStack(tmp_path_factory.mktemp("slow-clients"), cwd=ROOT)
    try:
        stack.use_database()
        stack.start_redis()
        stack.use_fake_fal("slow-clients-key:secret")
        stack.set_env(
            {
                "FAL_JWKS_URL": sandbox_server.jwks_url,
                "FAL_WEBHOOK_USER_ID": USER,
                "FALBRIDGE_API_TOKENS": API_TOKEN,
            }
        )
        stack.start_receiver()
        stack.start_proxy()
        yield stack
    finally:
        stack.stop(keep_redis_data=False)


def address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    return parts.hostname, parts.port


# -- the tests ----------------------------------------------------------------------------


@pytest.mark.slow
def test_fifty_slow_clients_leave_healthz_and_callbacks_answering_behind_nginx(stack, sandbox_server):
    with SlowClients(address(stack.proxy_url), SLOW_CLIENTS) as slow:
        probes = probe_healthz(stack.proxy_url, PROBES)
        print(f"behind nginx, {SLOW_CLIENTS} slow clients: {probes.summary()}")
        assert probes.failures == 0, probes.summary()
        assert probes.quantile(0.99) < P99_LIMIT_S, probes.summary()

        # A signed callback is ingested: body and query string reach falbridge byte for byte.
        request_id = f"slow-{uuid.uuid4()}"
        body, headers = signed_callback(sandbox_server, request_id)
        with httpx.Client(base_url=stack.proxy_url, timeout=PROBE_TIMEOUT_S) as client:
            answer = client.post("/webhooks/fal?job=a%2Fb+c&job=2", content=body, headers=headers)
            assert answer.status_code == 200, answer.text
            assert answer.json()["received"] is True
            stored = stored_delivery(stack, request_id)
            assert stored.verified and stored.body == body
            assert stored.headers["query_job_id"] == "a/b c"

            # Chunked (no Content-Length): nginx reads it whole and passes it on unchanged.
            request_id = f"slow-chunked-{uuid.uuid4()}"
            body, headers = signed_callback(sandbox_server, request_id)
            answer = client.post("/webhooks/fal", content=iter([body[:7], body[7:]]), headers=headers)
            assert answer.status_code == 200, answer.text
            assert stored_delivery(stack, request_id).body == body

            # A bad signature is read, stored as rejected and answered by falbridge itself.
            headers["X-Fal-Webhook-Signature"] = "bad"
            answer = client.post("/webhooks/fal", content=body, headers=headers)
            assert answer.status_code == 401
            assert answer.json()["error"]["code"] == "invalid_signature"

        # nginx held every slow client meanwhile: none was answered or dropped.
        assert slow.dropped == 0


@pytest.mark.slow
@pytest.mark.xfail(
    strict=True,
    raises=AssertionError,
    reason="without a proxy, gunicorn's gthread threads block on clients that trickle a request",
)
def test_the_same_slow_clients_straight_at_gunicorn_take_healthz_down(stack):
    with SlowClients(address(stack.receiver_url), SLOW_CLIENTS):
        probes = probe_healthz(stack.receiver_url, PROBES, stop_after_failures=2)
    print(f"gunicorn alone, {SLOW_CLIENTS} slow clients: {probes.summary()}")
    assert probes.failures == 0, probes.summary()


@pytest.mark.slow
def test_an_oversized_callback_is_refused_by_falbridge_not_by_nginx(stack, sandbox_server):
    limit = Config.from_environ({}).receiver.max_body_bytes
    _, headers = signed_callback(sandbox_server, f"big-{uuid.uuid4()}")  # read before it is verified
    answer = httpx.post(
        f"{stack.proxy_url}/webhooks/fal", content=b"x" * (limit + 1), headers=headers, timeout=30
    )
    assert answer.status_code == 413
    assert answer.json()["error"]["code"] == "request_entity_too_large"


def test_the_template_takes_the_port_and_the_upstream_and_nginx_accepts_it(tmp_path):
    if proxy.find_nginx() is None:
        pytest.fail("nginx is needed (Debian: apt-get install nginx; .ci/run installs it)")
    nginx = proxy.NginxProxy(tmp_path, 8000, "127.0.0.1:8001")
    nginx.write()
    binary = proxy.find_nginx()
    assert binary is not None
    argv = [binary, "-t", "-p", f"{tmp_path}/", "-c", str(nginx.conf), "-e", str(nginx.error_log)]
    checked = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    assert checked.returncode == 0, checked.stderr
    with pytest.raises(ValueError, match="NGINX_UPSTREAM"):
        proxy.render(proxy.template_text(), {"NGINX_PORT": "8000"})


def test_the_template_reads_whole_requests_with_deadlines_and_leaves_body_limits_to_falbridge():
    directives = dict(
        line.strip().rstrip(";").split(None, 1)
        for line in proxy.template_text().splitlines()
        if line.strip().endswith(";") and not line.strip().startswith("#")
    )
    for name in ("client_header_timeout", "client_body_timeout", "send_timeout"):
        assert directives[name] == "10s"
    assert directives["proxy_request_buffering"] == "on"
    assert directives["proxy_buffering"] == "on"
    assert directives["proxy_pass"] == "http://falbridge"  # no URI part: the request line unchanged
    size = directives["client_max_body_size"]
    assert size.endswith("m")
    defaults = Config.from_environ({})
    assert int(size[:-1]) * 1024 * 1024 > max(defaults.receiver.max_body_bytes, defaults.api.max_body_bytes)


def test_docker_compose_publishes_nginx_and_not_gunicorn():
    yaml = pytest.importorskip("yaml")
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    assert "ports" not in services["web"]
    assert services["nginx"]["ports"] == ["8000:8000"]
    template = "./falbridge/devstack/nginx.conf.template:/etc/nginx/templates/default.conf.template:ro"
    assert template in services["nginx"]["volumes"]
    environment = services["nginx"]["environment"]
    assert set(proxy.TEMPLATE_VARIABLES) <= set(environment)
    assert environment["NGINX_UPSTREAM"] == "web:8000"
