"""The edges of fal storage uploads (falbridge.worker.fal.upload): read and part sizes, the
multipart threshold, part numbering, the token's renewal margin, and answers the sandbox
never gives (malformed tokens, redirects, stalls). Those come from `ScriptedStorage`, a
stand-in for fal's storage that answers what each test scripts and records what it got."""

from __future__ import annotations

import dataclasses
import http.server
import io
import json
import os
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from falbridge.worker.fal import FalError, FinalError, RetryableError
from falbridge.worker.fal.upload import StorageClient, close_storage_client, get_storage_client
from tests.plugins.sandbox import TEST_FAL_KEY

MiB = 1024 * 1024
EXPIRES = datetime(2030, 1, 1, tzinfo=UTC)


class ScriptedStorage:
    """fal's storage API on a loopback port: a valid token and upload answers by default,
    `answers[path] = (status, body, headers)` to change one; every request is recorded."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, bytes]] = []
        self.answers: dict[str, tuple[int, Any, dict[str, str]]] = {}
        self.hold_s = 0.0  # how long each answer is held (a stalled storage)
        self._closing = threading.Event()
        self.token_body: dict[str, Any] = {}
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self.token_body = {
            "token": "t0k",
            "token_type": "Bearer",
            "base_url": self.url,
            "expires_at": EXPIRES.isoformat(),
        }
        threading.Thread(target=self._server.serve_forever, args=(0.01,), daemon=True).start()

    def paths(self, method: str | None = None) -> list[str]:
        return [path for m, path, _ in self.requests if method in (None, m)]

    def close(self) -> None:
        self._closing.set()
        self._server.shutdown()
        self._server.server_close()

    def _answer(self, method: str, path: str) -> tuple[int, Any, dict[str, str]]:
        if path in self.answers:
            return self.answers[path]
        if path == "/storage/auth/token":
            return 200, self.token_body, {}
        if path in ("/files/upload", "/files/upload/multipart"):
            return 200, {"access_url": f"{self.url}/files/tok/f.bin", "uploadId": "up1"}, {}
        if method == "PUT":
            return 200, None, {"ETag": f'"etag-{path.rsplit("/", 1)[-1]}"'}
        return 200, {"access_url": f"{self.url}/files/tok/f.bin"}, {}

    def _handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        storage = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                # Headers and body go out in separate writes: without this, Nagle plus
                # delayed ACKs add ~40 ms to every answer.
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def _serve(self) -> None:
                try:
                    body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                except OSError:
                    return
                path = self.path.split("?", 1)[0]
                storage.requests.append((self.command, path, body))
                if storage.hold_s:
                    storage._closing.wait(storage.hold_s)
                status, payload, headers = storage._answer(self.command, path)
                data = b"" if payload is None else json.dumps(payload).encode()
                self.send_response(status)
                for name, value in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_POST = do_PUT = do_GET = _serve

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


@pytest.fixture
def scripted() -> Iterator[ScriptedStorage]:
    storage = ScriptedStorage()
    try:
        yield storage
    finally:
        storage.close()


class Clock:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


class ReadSizes(io.BytesIO):
    """A file that notes how much each read asks for."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.asked: list[int] = []

    def read(self, size: int | None = -1, /) -> bytes:
        self.asked.append(-1 if size is None else size)
        return super().read(size)


def client_of(storage: ScriptedStorage, **kwargs: Any) -> StorageClient:
    return StorageClient(storage.url, storage.url, TEST_FAL_KEY, **kwargs)


def upload(client: StorageClient, data: bytes) -> Any:
    return client.upload(io.BytesIO(data), len(data), "application/octet-stream", "f.bin")


# -- sizes ------------------------------------------------------------------------


def test_a_file_is_read_256_kib_at_a_time(scripted):
    source = ReadSizes(b"\x01" * (600 * 1024))
    with client_of(scripted) as client:
        client.upload(source, 600 * 1024, "application/octet-stream", "f.bin")
    assert source.asked == [256 * 1024, 256 * 1024, 88 * 1024]


# An empty source shows how the upload was shaped without moving any bytes: the whole
# body, or the first part, is found missing all at once.
@pytest.mark.parametrize(
    ("size", "missing"),
    [(1000, 1000), (100 * MiB, 100 * MiB), (100 * MiB + 1, 10 * MiB)],
    ids=["small-whole", "100MiB-whole", "one-byte-more-in-10MiB-parts"],
)
def test_by_default_files_over_100_mib_go_in_10_mib_parts(scripted, size, missing):
    with client_of(scripted) as client, pytest.raises(FinalError, match=f"ended {missing} bytes early"):
        client.upload(io.BytesIO(b""), size, "application/octet-stream", "f.bin")
    assert ("/files/upload/multipart" in scripted.paths("POST")) is (size > 100 * MiB)


def test_parts_are_numbered_from_one_and_the_last_may_be_one_byte(scripted):
    with client_of(scripted, multipart_bytes=10, part_bytes=4) as client:
        done = upload(client, b"abcdefghijklm")  # 13 bytes: 4 + 4 + 4 + 1
    puts = [(path, body) for method, path, body in scripted.requests if method == "PUT"]
    assert puts == [
        (f"/files/tok/f.bin/multipart/up1/{n}", part)
        for n, part in enumerate([b"abcd", b"efgh", b"ijkl", b"m"], 1)
    ]
    [complete] = [body for method, path, body in scripted.requests if path.endswith("/complete")]
    assert json.loads(complete) == {"parts": [{"partNumber": n, "etag": f'"etag-{n}"'} for n in range(1, 5)]}
    assert done.url == f"{scripted.url}/files/tok/f.bin"


# -- the client's settings -----------------------------------------------------------


def test_sizes_and_timeout_are_keyword_only(scripted):
    with pytest.raises(TypeError):
        StorageClient(scripted.url, scripted.url, TEST_FAL_KEY, 1000)  # type: ignore[misc]


def test_an_upload_is_a_value(scripted):
    with client_of(scripted) as client:
        done = upload(client, b"x")
    assert {done: 1}[done] == 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        done.url = "https://elsewhere.example/x"  # type: ignore[misc]


def test_a_given_timeout_is_used(scripted):
    scripted.hold_s = 1.0  # five times the timeout given, far under the default one
    with client_of(scripted, timeout=httpx.Timeout(0.2)) as client, pytest.raises(RetryableError):
        upload(client, b"x")


def test_a_redirect_is_not_followed(scripted):
    scripted.answers["/storage/auth/token"] = (307, {}, {"Location": f"{scripted.url}/elsewhere"})
    scripted.answers["/elsewhere"] = (200, scripted.token_body, {})
    with client_of(scripted) as client, pytest.raises(FalError):
        upload(client, b"x")
    assert "/elsewhere" not in scripted.paths()


# -- the CDN token ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "expires_at",
    ["2030-01-01T00:00:00+00:00", "2030-01-01T00:00:00", "2030-01-01T02:00:00+02:00"],
    ids=["utc", "naive-read-as-utc", "other-offset"],
)
def test_the_token_is_renewed_from_30_s_before_it_expires(scripted, expires_at):
    scripted.token_body["expires_at"] = expires_at
    clock = Clock(EXPIRES - timedelta(hours=1))
    with client_of(scripted, clock=clock) as client:
        renewals = []
        for at in (
            EXPIRES - timedelta(hours=1),
            EXPIRES - timedelta(seconds=30, microseconds=1),
            EXPIRES - timedelta(seconds=30),
            EXPIRES + timedelta(minutes=1),
        ):
            clock.at = at
            upload(client, b"x")
            renewals.append(scripted.paths().count("/storage/auth/token"))
    assert renewals == [1, 1, 2, 3]


@pytest.mark.parametrize(
    "change",
    [
        {"token_type": None},  # missing
        {"expires_at": 1893456000},  # not a string
        {"expires_at": "soon"},  # not a time
        {"base_url": "ftp://cdn.example"},  # not http(s)
    ],
    ids=["missing-field", "number-for-time", "unreadable-time", "bad-base-url"],
)
def test_a_malformed_token_answer_is_a_final_error(scripted, change):
    for name, value in change.items():
        if value is None:
            del scripted.token_body[name]
        else:
            scripted.token_body[name] = value
    with client_of(scripted) as client, pytest.raises(FinalError, match="incomplete or malformed"):
        upload(client, b"x")


def test_an_empty_access_url_is_named_as_missing(scripted):
    scripted.answers["/files/upload"] = (200, {"access_url": ""}, {})
    with client_of(scripted) as client, pytest.raises(FinalError, match="has no access_url"):
        upload(client, b"x")


# -- the process-wide client -----------------------------------------------------------


@pytest.fixture
def configured(scripted, monkeypatch):
    monkeypatch.setenv("FAL_KEY", TEST_FAL_KEY)
    monkeypatch.setenv("FAL_REST_URL", scripted.url)
    monkeypatch.setenv("FAL_CDN_URL", scripted.url)
    close_storage_client()
    yield scripted
    close_storage_client()


def test_the_process_wide_client_is_kept_until_closed(configured):
    shared = get_storage_client()
    assert get_storage_client() is shared
    close_storage_client()
    with pytest.raises(RuntimeError, match="closed"):
        upload(shared, b"x")
    assert get_storage_client() is not shared


def _in_a_forked_child(check: Any) -> bool:
    """Whether `check()` holds in a forked child (which leaves at once, past pytest)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        ok = False
        try:
            ok = bool(check())
        finally:
            os.write(write_end, b"1" if ok else b"0")
            os._exit(0)
    os.close(write_end)
    answer = os.read(read_end, 1)
    os.close(read_end)
    os.waitpid(pid, 0)
    return answer == b"1"


def test_a_forked_child_builds_its_own_client_and_leaves_the_inherited_one_open(configured):
    inherited = get_storage_client()

    def closing_first() -> bool:
        close_storage_client()  # the parent's client: not this process's to close
        return upload(inherited, b"x").url.endswith("/f.bin")

    assert _in_a_forked_child(lambda: get_storage_client() is not inherited)
    assert _in_a_forked_child(closing_first)
    assert get_storage_client() is inherited
