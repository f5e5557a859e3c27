"""A user's service that receives falbridge's events badly on purpose, for the chaos run
and the delivery benchmark.

Each request draws one fault from the mix: a 500, an answer slower than falbridge's
per-attempt timeout, a connection dropped without an answer, a 429 with Retry-After; the
rest are answered 204. `away(seconds)` closes the port for a while (the service is down,
connections are refused) and opens it again on the same port. Only answered-2xx requests
count as received; every one is checked with `standardwebhooks` (an independent verifier)
when the secret is known.
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

# The subscriber faults; the rest of the requests are answered 204. 15 % of all
# attempts fail: with the schedule's 8 attempts a delivery is exhausted by chance with
# odds of 0.15^8 (3e-7), so a dead letter in a chaos run means something real (see
# bench/chaos_config.py for the outage).
SUBSCRIBER_FAULTS = {
    "error_500": 0.06,
    "slow": 0.02,  # answers after slow_s: longer than the attempt timeout the chaos run sets
    "drop": 0.03,
    "throttle_429": 0.04,
}


@dataclass(frozen=True)
class Received:
    """One event as the subscriber accepted it (answered 2xx)."""

    webhook_id: str
    type: str
    job_id: str
    sequence: int
    to_status: str  # the transition this event is
    status: str  # the job's status when the attempt was made


@dataclass
class SubscriberLog:
    received: list[Received] = field(default_factory=list)
    requests: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    bad_signatures: int = 0
    outages: int = 0
    truncated: int = 0  # bodies cut short by a sender that died: neither received nor bad


class FaultySubscriber:
    def __init__(
        self,
        faults: dict[str, float] | None = None,
        *,
        seed: int = 1,
        slow_s: float = 3.0,
        retry_after_s: int = 1,
        secret: str | None = None,
    ) -> None:
        self.faults = dict(SUBSCRIBER_FAULTS if faults is None else faults)
        self.slow_s, self.retry_after_s = slow_s, retry_after_s
        self.secret = secret
        self.log = SubscriberLog()
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.port = _free_port()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/falbridge"

    def start(self) -> FaultySubscriber:
        self._server = _Server(("127.0.0.1", self.port), _handler_for(self))
        self._thread = threading.Thread(target=self._server.serve_forever, name="subscriber", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def away(self, seconds: float) -> None:
        """Down for `seconds` (refused connections), then back on the same port."""
        self.stop()
        self.log.outages += 1
        time.sleep(seconds)  # the outage itself, not a wait for anything
        self.start()

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "requests": self.log.requests,
                "received": len(self.log.received),
                "distinct": len({r.webhook_id for r in self.log.received}),
                "bad_signatures": self.log.bad_signatures,
                "truncated": self.log.truncated,
                "faults": dict(self.log.faults),
                "outages": self.log.outages,
            }

    def draw(self) -> str | None:
        with self._lock:
            self.log.requests += 1
            roll = self._random.random()
        for fault, share in self.faults.items():
            if roll < share:
                return fault
            roll -= share
        return None

    def signed(self, headers: dict[str, str], body: bytes) -> bool:
        """Whether the signature holds (always, with no secret given); counts bad ones."""
        if self.secret is None or _signature_ok(self.secret, headers, body):
            return True
        with self._lock:
            self.log.bad_signatures += 1
        return False

    def accept(self, headers: dict[str, str], body: bytes) -> None:
        event = json.loads(body)
        data = event["data"]
        entry = Received(
            headers["webhook-id"],
            event["type"],
            data["id"],
            data["sequence"],
            data["event"]["to_status"],
            data["status"],
        )
        with self._lock:
            self.log.received.append(entry)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128  # not 5: a burst of deliveries must not be refused by the backlog

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A worker SIGKILLed mid-request resets its connection: expected here, not news.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def _handler_for(subscriber: FaultySubscriber) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            if self.path != "/_stats":
                return self._answer(404)
            body = json.dumps(subscriber.stats()).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", 0))
            body = self.rfile.read(length)
            if len(body) < length:  # the sender died mid-body (a SIGKILLed worker)
                with subscriber._lock:
                    subscriber.log.truncated += 1
                self.close_connection = True
                return
            headers = {k.lower(): v for k, v in self.headers.items()}
            if not subscriber.signed(headers, body):
                return self._answer(400)
            fault = subscriber.draw()
            if fault is not None:
                with subscriber._lock:
                    subscriber.log.faults[fault] += 1
            if fault == "drop":
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            if fault == "slow":
                time.sleep(subscriber.slow_s)  # the fault: an answer later than the timeout
            if fault == "error_500":
                return self._answer(500)
            if fault == "throttle_429":
                return self._answer(429, {"Retry-After": str(subscriber.retry_after_s)})
            subscriber.accept(headers, body)
            self._answer(204)

        def _answer(self, status: int, headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


def _signature_ok(secret: str, headers: dict[str, str], body: bytes) -> bool:
    from standardwebhooks.webhooks import Webhook, WebhookVerificationError

    try:
        Webhook(secret).verify(body, headers)
    except WebhookVerificationError:
        return False
    return True


def subscribe(
    env: Mapping[str, str],
    url: str,
    events: list[str],
    *,
    description: str = "bench subscriber",
    api_url: str | None = None,
    api_token: str | None = None,
) -> dict[str, Any]:
    """A subscription made the way a user makes one: POST /api/subscriptions on `api_url`,
    or (no API given, or a build without that endpoint) falbridge.worker.notify.manage in a
    child with the stack's environment `env` (its database, secret key, allowed networks),
    so this process's own configuration is left alone. The answer holds the secret, shown
    this once; `made_by` says which path made it."""
    if api_url is not None:
        body = {"url": url, "events": events, "description": description}
        headers = {"Authorization": f"Bearer {api_token}"}
        response = httpx.post(f"{api_url}/api/subscriptions", json=body, headers=headers, timeout=30)
        if response.status_code == 201:
            made: dict[str, Any] = response.json()
            return {**made, "made_by": "POST /api/subscriptions"}
        if response.status_code != 404:
            raise RuntimeError(f"POST /api/subscriptions: HTTP {response.status_code}: {response.text[:300]}")
    code = (
        "import json, sys\n"
        "from falbridge.worker.notify import manage\n"
        "made = manage.create(sys.argv[1], json.loads(sys.argv[2]), sys.argv[3])\n"
        "print(json.dumps(made, default=str))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, url, json.dumps(events), description],
        env=dict(env),
        cwd=Path(__file__).resolve().parent.parent,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if done.returncode != 0:
        raise RuntimeError(f"worker.notify.manage.create failed: {done.stderr[-1000:]}")
    made = json.loads(done.stdout.strip().splitlines()[-1])
    return {**made, "made_by": "worker.notify.manage.create"}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="a subscriber without faults, until SIGTERM")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--secret", help="check every signature with it")
    args = parser.parse_args(argv)
    subscriber = FaultySubscriber({}, secret=args.secret)
    subscriber.port = args.port
    subscriber.start()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"subscriber: listening on {subscriber.url}", flush=True)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    sys.exit(main())
