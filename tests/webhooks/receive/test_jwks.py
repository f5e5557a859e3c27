"""fal's JWKS as the receiver uses it (issue 11): a JWKS that fails or hangs must cost at
most one fetch per backoff window however many forged callbacks arrive, no request may wait
on a fetch in flight for longer than a short bound, and without a usable key the answer is
503 (fal delivers again later). All over real HTTP: the JWKS is the sandbox's, or a local
server that answers 500 or never answers."""

from __future__ import annotations

import base64
import http.server
import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from falbridge.devstack.processes import wait_http
from falbridge.sandbox.signing import SigningKey
from falbridge.webhooks import current
from falbridge.webhooks.app import create_app
from falbridge.webhooks.receive.jwks import JwksCache, JwksUnavailable, decode_jwk_x, parse_jwks
from falbridge.webhooks.receive.verify import VerificationError, verify
from tests.plugins.db import config_with, free_port
from tests.plugins.sandbox import WebhookSink
from tests.plugins.waiting import poll_until
from tests.webhooks.receive.test_signatures import _body, signed_headers

# JwksCache's defaults, as docs/configuration.md states them: a request waits at most
# WAIT_S for a JWKS fetch in flight; after a failed fetch none is made for RETRY_AFTER_S.
WAIT_S = 1.0
RETRY_AFTER_S = 30
MARGIN_S = 1.0  # scheduling slack on a shared 2-core machine, not part of any bound
BURST = 50
FORGER = SigningKey.generate()  # a key fal never published


class Clock:
    """A monotonic clock the test moves (the cache's `clock`), for ages and backoff."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class HangingJwks:
    """A JWKS URL that accepts each request and never answers it (until closed); counts
    the requests that arrived."""

    def __init__(self) -> None:
        self.arrived = 0
        self._release = threading.Event()
        self._count = threading.Lock()
        hanging = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with hanging._count:
                    hanging.arrived += 1
                hanging._release.wait(120)
                self.send_error(503)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._server.block_on_close = False
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        ).start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/.well-known/jwks.json"

    def close(self) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def failing_jwks() -> Iterator[str]:
    sink = WebhookSink(default_status=500)
    try:
        yield sink.base_url + "/.well-known/jwks.json"
    finally:
        sink.close()


@pytest.fixture
def failing_sink() -> Iterator[WebhookSink]:
    sink = WebhookSink(default_status=500)
    try:
        yield sink
    finally:
        sink.close()


@pytest.fixture
def hanging_jwks() -> Iterator[HangingJwks]:
    server = HangingJwks()
    try:
        yield server
    finally:
        server.close()


def forged(i: int) -> tuple[dict[str, str], bytes]:
    """A well-formed callback signed with a key fal never published."""
    request_id = f"req-forged-{i}"
    body = _body(request_id)
    return signed_headers(None, body, request_id=request_id, key=FORGER), body


def genuine(sandbox, i: int = 0) -> tuple[dict[str, str], bytes]:
    request_id = f"req-genuine-{i}"
    body = _body(request_id)
    return signed_headers(sandbox.server, body, request_id=request_id), body


def burst(n: int, call: Callable[[int], Any], timeout: float) -> list[tuple[float, Any]]:
    """Run call(0..n-1) in n threads released together; (seconds taken, result or the
    exception raised) for each. Fails if any is still running after `timeout`."""
    barrier = threading.Barrier(n)
    results: list[tuple[float, Any]] = [(0.0, None)] * n

    def run(i: int) -> None:
        barrier.wait()
        started = time.monotonic()
        try:
            outcome = call(i)
        except Exception as exc:  # the outcome under test, whatever it is
            outcome = exc
        results[i] = (time.monotonic() - started, outcome)

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(n)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    stuck = sum(thread.is_alive() for thread in threads)
    assert not stuck, f"{stuck} of {n} still waiting after {timeout} s"
    return results


def verify_each(
    cache: JwksCache, make: Callable[[int], tuple[dict[str, str], bytes]]
) -> Callable[[int], Any]:
    def call(i: int) -> Any:
        headers, body = make(i)
        return verify(headers, body, cache)

    return call


def kinds(results: list[tuple[float, Any]]) -> set[str]:
    return {type(outcome).__name__ for _, outcome in results}


# -- the cache's edges, one at a time ----------------------------------------------------


def test_the_defaults_are_fals_limits():
    cache = JwksCache("http://127.0.0.1:9/unused")
    assert (cache.ttl_s, cache.refetch_min_age_s, cache.retry_after_s) == (86400, 60, RETRY_AFTER_S)
    assert (cache.wait_s, cache.fetch_timeout_s) == (WAIT_S, 10.0)
    # fal's own example: a 10 s timeout; connecting may take at most 5 s of it.
    assert cache._http.timeout == httpx.Timeout(10.0, connect=5.0)
    assert JwksCache("http://127.0.0.1:9/unused", fetch_timeout_s=2)._http.timeout == httpx.Timeout(2.0)


def test_the_options_are_passed_by_name():
    with pytest.raises(TypeError):
        JwksCache("http://127.0.0.1:9/unused", 60)  # type: ignore[misc]
    assert JwksCache(url="http://127.0.0.1:9/unused", ttl_s=5).ttl_s == 5


@pytest.mark.parametrize("n", range(0, 67))
def test_a_jwk_x_of_any_length_is_decoded_padded_or_not(n):
    raw = bytes(range(n))
    x = base64.urlsafe_b64encode(raw).decode()
    assert decode_jwk_x(x.rstrip("=")) == raw
    assert decode_jwk_x(x) == raw


def test_only_ed25519_okp_keys_are_used():
    """Each member as fal's JSON would carry it (parsed, not Python literals)."""
    x = SigningKey.generate().jwk()["x"]
    usable = [{"kty": "OKP", "crv": "Ed25519", "x": x}, {"x": x}]  # kty and crv default to fal's
    unusable = [{"kty": kty, "crv": "Ed25519", "x": x} for kty in ("EC", "RSA", "oct", "OKp", "")] + [
        {"kty": "OKP", "crv": crv, "x": x} for crv in ("X25519", "Ed448", "P-256", "Ed2551", "")
    ]
    for member in usable:
        assert len(parse_jwks(json.loads(json.dumps({"keys": [member]})))) == 1, member
    for member in unusable:
        assert parse_jwks(json.loads(json.dumps({"keys": [member]}))) == [], member


def _jwks_document(size: int) -> bytes:
    """fal's JWKS with one usable key, padded to exactly `size` bytes."""
    key = SigningKey.generate().jwk()
    empty = json.dumps({"keys": [key], "padding": ""}).encode()
    return json.dumps({"keys": [key], "padding": "x" * (size - len(empty))}).encode()


def test_a_jwks_document_of_exactly_64_kib_is_read_one_byte_more_refused():
    sink = WebhookSink()
    try:
        exact = sink.serve_file("/exact.json", _jwks_document(64 * 1024))
        assert len(JwksCache(exact).keys()) == 1
        over = sink.serve_file("/over.json", _jwks_document(64 * 1024 + 1))
        cache = JwksCache(over)
        with pytest.raises(JwksUnavailable):
            cache.keys()
        assert cache.last_error == "ValueError: document over 65536 bytes"
    finally:
        sink.close()


class TricklingJwks:
    """A JWKS URL that answers 200 and then sends its body one byte every 10 ms, each read
    well within any read timeout (until closed)."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        trickling = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Length", str(60 * 1024))
                self.end_headers()
                while not trickling._stop.wait(0.01):
                    try:
                        self.wfile.write(b" ")
                        self.wfile.flush()
                    except OSError:
                        return

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._server.block_on_close = False
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        ).start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/.well-known/jwks.json"

    def close(self) -> None:
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()


def test_a_jwks_trickling_its_bytes_is_given_up_at_the_fetch_timeout(sandbox):
    assert JwksCache(sandbox.jwks_url, fetch_timeout_s=0.5).keys()  # a prompt one is read whole
    server = TricklingJwks()
    try:
        cache = JwksCache(server.url, fetch_timeout_s=0.5, wait_s=0.05)
        with pytest.raises(JwksUnavailable):
            cache.keys()
        poll_until(lambda: cache.last_error, bool, timeout=0.5 + 5)
        assert cache.last_error == "ValueError: not downloaded within 0.5 s"
    finally:
        server.close()


def test_a_fresh_cache_asks_for_no_rotation_refetch_until_it_is_old_enough(sandbox):
    clock = Clock()
    cache = JwksCache(sandbox.jwks_url, refetch_min_age_s=60, clock=clock)
    tried = cache.keys()
    clock.advance(59.5)
    assert cache.refresh_for_rotation(tried) is False  # nothing else to try, too young to refetch
    assert cache.fetches == 1
    clock.advance(0.5)  # exactly the minimum age: old enough
    assert cache.refresh_for_rotation(tried) is True
    assert cache.fetches == 2


def test_keys_refetched_unchanged_are_tried_before_any_rotation_refetch(sandbox):
    """A TTL refetch brings the same keys in a new set: a thread that tried the old set
    tries the new one, and that costs no fetch, however old the new set is."""
    clock = Clock()
    cache = JwksCache(sandbox.jwks_url, ttl_s=100, refetch_min_age_s=60, clock=clock)
    tried = cache.keys()
    clock.advance(101)
    assert cache.keys() is not tried and cache.fetches == 2
    clock.advance(61)
    assert cache.refresh_for_rotation(tried) is True
    assert cache.fetches == 2


def test_after_a_failed_fetch_the_next_comes_once_the_window_is_over_however_late(failing_jwks):
    clock = Clock()
    cache = JwksCache(failing_jwks, retry_after_s=RETRY_AFTER_S, clock=clock)
    with pytest.raises(JwksUnavailable, match="last fetch failed: ValueError: answered HTTP 500"):
        cache.keys()
    clock.advance(1005)  # long past the window (and not a multiple of anything)
    with pytest.raises(JwksUnavailable):
        cache.keys()
    assert cache.fetches == 2
    clock.advance(RETRY_AFTER_S - 1)
    with pytest.raises(JwksUnavailable):
        cache.keys()
    assert cache.fetches == 2
    clock.advance(1)  # exactly the window
    with pytest.raises(JwksUnavailable):
        cache.keys()
    assert cache.fetches == 3


def test_while_a_fetch_is_in_flight_the_refusal_says_so(hanging_jwks):
    cache = JwksCache(hanging_jwks.url, wait_s=0.05)
    with pytest.raises(JwksUnavailable, match=r"\(a fetch is in flight\)$"):
        cache.keys()


def _fetch_threads_done() -> None:
    for thread in threading.enumerate():
        if thread.name == "jwks-fetch":
            thread.join(10)


def test_a_failed_fetch_is_logged_once_with_its_reason_and_a_good_one_not_at_all(
    sandbox, failing_jwks, caplog
):
    caplog.set_level(logging.WARNING, logger="falbridge.webhooks.receive.jwks")
    JwksCache(sandbox.jwks_url).keys()
    _fetch_threads_done()
    assert caplog.records == []
    with pytest.raises(JwksUnavailable):
        JwksCache(failing_jwks).keys()
    _fetch_threads_done()
    assert [r.getMessage() for r in caplog.records] == [
        f"JWKS fetch from {failing_jwks} failed (ValueError: answered HTTP 500); "
        "next one in 30 s at the earliest"
    ]


def test_an_unexpected_error_in_a_fetch_is_a_failed_fetch_that_says_why(caplog):
    sink = WebhookSink()
    try:
        cache = JwksCache(sink.serve_file("/jwks.json", b'{"keys": 5}'))
        with pytest.raises(JwksUnavailable):
            cache.keys()
        _fetch_threads_done()
        assert cache.last_error == "TypeError: 'int' object is not iterable"
        assert any(r.levelno == logging.ERROR and r.exc_info for r in caplog.records)
    finally:
        sink.close()


def test_a_fetch_in_flight_does_not_keep_the_process_alive(hanging_jwks):
    """The fetch runs in a daemon thread: a worker shutting down is not held for the fetch
    timeout by a JWKS that never answers. (keys() waits up to 2 s, so the request has
    reached the JWKS on loopback when the process ends.)"""
    code = (
        "from falbridge.webhooks.receive.jwks import JwksCache, JwksUnavailable\n"
        f"cache = JwksCache({hanging_jwks.url!r}, wait_s=2, fetch_timeout_s=120)\n"
        "try:\n    cache.keys()\nexcept JwksUnavailable:\n    pass\n"
    )
    done = subprocess.run([sys.executable, "-c", code], timeout=60, capture_output=True)
    assert done.returncode == 0, done.stderr
    assert hanging_jwks.arrived == 1


class PausingClock(Clock):
    """A Clock that holds one thread inside its next reading until released."""

    def __init__(self) -> None:
        super().__init__()
        self.held: threading.Thread | None = None
        self.holding = threading.Event()
        self.release = threading.Event()

    def __call__(self) -> float:
        if threading.current_thread() is self.held and not self.release.is_set():
            self.holding.set()
            self.release.wait(10)
        return self.now


@pytest.mark.parametrize("ttl_s", [0, 10])
def test_a_thread_that_saw_expired_keys_takes_those_another_thread_just_fetched(sandbox, ttl_s):
    """keys() checks the age again under its lock: a thread that found the keys expired,
    then got the lock after another thread's refetch had landed, uses those keys instead
    of fetching once more."""
    clock = PausingClock()
    cache = JwksCache(sandbox.jwks_url, ttl_s=ttl_s, clock=clock)
    cache.keys()
    clock.advance(ttl_s + 1)  # expired
    got: list[object] = []
    late = threading.Thread(target=lambda: got.append(cache.keys()), daemon=True)
    clock.held = late
    late.start()
    assert clock.holding.wait(10)  # `late` is reading the clock for the expired keys' age
    refreshed = cache.keys()  # meanwhile this thread refetches
    assert cache.fetches == 2
    clock.release.set()
    late.join(10)
    assert got == [refreshed] and cache.fetches == 2


# -- through the real Flask app ----------------------------------------------------------


def _post_each(app, make: Callable[[int], tuple[dict[str, str], bytes]]) -> Callable[[int], int]:
    def call(i: int) -> int:
        headers, body = make(i)
        return app.test_client().post("/webhooks/fal", data=body, headers=headers).status_code

    return call


def test_a_burst_of_forged_callbacks_against_a_failing_jwks_costs_one_fetch(failing_sink):
    app = create_app(config_with(FAL_JWKS_URL=failing_sink.base_url + "/.well-known/jwks.json"))
    results = burst(BURST, _post_each(app, forged), timeout=30)
    assert {status for _, status in results} == {503}  # no key was ever had: fal retries
    assert len(failing_sink.received) == 1
    with app.app_context():
        assert current.jwks().fetches == 1


def test_a_burst_against_a_hanging_jwks_waits_at_most_the_short_bound(hanging_jwks):
    app = create_app(config_with(FAL_JWKS_URL=hanging_jwks.url))
    results = burst(BURST, _post_each(app, forged), timeout=WAIT_S + 2 * MARGIN_S)
    assert {status for _, status in results} == {503}
    slowest = max(seconds for seconds, _ in results)
    assert slowest <= WAIT_S + MARGIN_S, f"a request waited {slowest:.2f} s for the JWKS"
    assert hanging_jwks.arrived == 1


@pytest.fixture
def gunicorn_receiver(hanging_jwks, tmp_path) -> Iterator[str]:
    """`falbridge serve` with two request threads: when both wait on the JWKS, /healthz
    queues behind them (how a hanging JWKS made /healthz wait 7 s)."""
    port = free_port()
    env = dict(
        os.environ,
        FAL_JWKS_URL=hanging_jwks.url,
        REDIS_URL="redis://127.0.0.1:1/0",
        DATABASE_URL=f"sqlite:///{tmp_path / 'unused.db'}",
        FALBRIDGE_VAR_DIR=str(tmp_path),
        FAL_WEBHOOK_USER_ID="sandbox-user",
        FALBRIDGE_SECRET_KEY="test-secret-key-for-the-jwks-tests-0123456789",
    )
    command = [
        sys.executable,
        "-m",
        "falbridge",
        "serve",
        "--port",
        str(port),
        "--workers",
        "1",
        "--threads",
        "2",
    ]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/healthz", proc)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:  # threads stuck on the JWKS outlast the grace period
            proc.kill()
            proc.wait(10)


def test_healthz_is_not_held_up_by_verifications_waiting_on_a_hanging_jwks(gunicorn_receiver, hanging_jwks):
    url = gunicorn_receiver

    def post(i: int) -> int:
        headers, body = forged(i)
        return httpx.post(f"{url}/webhooks/fal", content=body, headers=headers, timeout=30).status_code

    outcome: list[list[tuple[float, Any]]] = []
    posting = threading.Thread(target=lambda: outcome.append(burst(6, post, timeout=30)), daemon=True)
    posting.start()
    poll_until(lambda: hanging_jwks.arrived, bool, timeout=10)  # verifications are blocked now
    started = time.monotonic()
    assert httpx.get(f"{url}/healthz", timeout=15).status_code == 200
    healthz_s = time.monotonic() - started
    assert healthz_s <= WAIT_S + MARGIN_S, f"/healthz took {healthz_s:.2f} s"
    posting.join(30)
    [results] = outcome
    assert {status for _, status in results} == {503}
    slowest = max(seconds for seconds, _ in results)
    assert slowest <= WAIT_S + MARGIN_S, f"a callback waited {slowest:.2f} s"
    assert hanging_jwks.arrived == 1


# -- the cache itself (verify() from many threads) ---------------------------------------


def test_a_failed_fetch_is_remembered_for_the_backoff_window(failing_jwks):
    clock = Clock()
    cache = JwksCache(failing_jwks, retry_after_s=RETRY_AFTER_S, clock=clock)
    for _ in range(3):
        results = burst(BURST, verify_each(cache, forged), timeout=30)
        assert kinds(results) == {"JwksUnavailable"}
        assert cache.fetches == 1
        clock.advance((RETRY_AFTER_S - 1) / 3)
    clock.advance(1)  # the window has passed: one fetch again, not one per request
    burst(BURST, verify_each(cache, forged), timeout=30)
    assert cache.fetches == 2


def test_rotation_refetches_are_backed_off_too_and_valid_cached_keys_still_verify(sandbox, failing_jwks):
    clock = Clock()
    cache = JwksCache(sandbox.jwks_url, refetch_min_age_s=60, retry_after_s=RETRY_AFTER_S, clock=clock)
    verify(*genuine(sandbox), cache)
    assert cache.fetches == 1
    cache.url = failing_jwks
    clock.advance(61)  # old enough that a signature no cached key verifies asks for a refetch
    results = burst(BURST, verify_each(cache, forged), timeout=30)
    # fal's keys may have rotated and can't be had: 503, so a genuine callback is retried
    assert kinds(results) == {"JwksUnavailable"}
    assert cache.fetches == 2
    verify(*genuine(sandbox, 1), cache)  # the cached key is within its TTL and verifies
    clock.advance(RETRY_AFTER_S)
    burst(BURST, verify_each(cache, forged), timeout=30)
    assert cache.fetches == 3


def test_past_the_ttl_cached_keys_are_dropped_even_while_backing_off(sandbox, failing_jwks):
    clock = Clock()
    cache = JwksCache(sandbox.jwks_url, ttl_s=3600, retry_after_s=RETRY_AFTER_S, clock=clock)
    verify(*genuine(sandbox), cache)
    cache.url = failing_jwks
    clock.advance(3600 - 10)
    verify(*genuine(sandbox, 1), cache)  # 10 s left: the cached key still verifies
    with pytest.raises(JwksUnavailable):
        verify(*forged(0), cache)  # asks for a refetch, which fails: backing off from here
    assert cache.fetches == 2
    clock.advance(20)  # past the TTL, inside the backoff window: no fetch, and no key
    with pytest.raises(JwksUnavailable):
        verify(*genuine(sandbox, 2), cache)
    assert cache.fetches == 2


def test_a_hanging_jwks_is_given_up_at_the_fetch_timeout_then_backed_off(hanging_jwks):
    clock = Clock()
    cache = JwksCache(hanging_jwks.url, fetch_timeout_s=0.5, wait_s=0.1, clock=clock)
    started = time.monotonic()
    with pytest.raises(JwksUnavailable):
        cache.keys()
    assert time.monotonic() - started <= 0.1 + MARGIN_S
    poll_until(lambda: cache.last_error, bool, timeout=0.5 + 5)  # the fetch timed out
    with pytest.raises(JwksUnavailable):
        cache.keys()  # backing off: no second request to a JWKS that hangs
    assert (cache.fetches, hanging_jwks.arrived) == (1, 1)
    clock.advance(RETRY_AFTER_S)
    with pytest.raises(JwksUnavailable):
        cache.keys()
    poll_until(lambda: hanging_jwks.arrived, lambda n: n == 2, timeout=5)


def test_an_oversized_jwks_document_is_a_failed_fetch(sandbox):
    sink = WebhookSink()
    try:
        padding = "x" * (100 * 1024)
        url = sink.serve_file("/jwks.json", f'{{"keys": [], "padding": "{padding}"}}'.encode())
        cache = JwksCache(url)
        with pytest.raises(JwksUnavailable):
            cache.keys()
        assert "bytes" in (cache.last_error or "")
    finally:
        sink.close()


def test_a_bad_signature_is_rejected_even_when_a_refetch_is_allowed(sandbox):
    cache = JwksCache(sandbox.jwks_url, refetch_min_age_s=0)
    verify(*genuine(sandbox), cache)
    with pytest.raises(VerificationError, match="does not verify"):
        verify(*forged(0), cache)
    assert cache.fetches == 2  # the refetch did happen, and still nothing verified


def test_concurrent_verifications_after_a_rotation_cost_exactly_one_fetch(sandbox):
    cache = JwksCache(sandbox.jwks_url, refetch_min_age_s=0, wait_s=10)
    verify(*genuine(sandbox), cache)
    sandbox.rotate_keys(keep_old=False)
    results = burst(20, verify_each(cache, lambda i: genuine(sandbox, i)), timeout=30)
    assert kinds(results) == {"VerifiedHeaders"}
    assert cache.fetches == 2


def test_a_thread_that_tried_keys_since_replaced_retries_with_the_new_ones_unfetched(sandbox):
    # The interleaving a burst leaves to chance: tried the old keys, and another thread's
    # refetch landed before this one asked for its own.
    cache = JwksCache(sandbox.jwks_url, refetch_min_age_s=0)
    tried = cache.keys()
    sandbox.rotate_keys(keep_old=False)
    verify(*genuine(sandbox), cache)  # another thread's refetch
    assert cache.fetches == 2
    assert cache.refresh_for_rotation(tried) is True  # try again, with the new keys
    assert cache.fetches == 2
