"""The S3 backend's edges against moto's server over HTTP (worker/storage/s3.py): the parts
of a multipart upload, the prefix, what a reader fetches, and an S3 that refuses."""

from __future__ import annotations

import io
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from falbridge.worker.storage import backend as backends
from falbridge.worker.storage.s3 import S3Backend
from tests.plugins.storage import MotoServer, use_s3

MIB = 1024 * 1024


def _s3(monkeypatch: pytest.MonkeyPatch, moto: MotoServer, url: str | None = None) -> S3Backend:
    backend = backends.open_backend(url or use_s3(monkeypatch, moto))
    assert isinstance(backend, S3Backend)
    return backend


def _parts(backend: S3Backend) -> list[tuple[int, int]]:
    """(number, size) of each part of the upload in progress, as S3 lists them."""
    uploads = backend.client.list_multipart_uploads(Bucket=backend.bucket).get("Uploads", [])
    if not uploads:
        return []
    [upload] = uploads
    listed = backend.client.list_parts(Bucket=backend.bucket, Key=upload["Key"], UploadId=upload["UploadId"])
    return [(part["PartNumber"], part["Size"]) for part in listed.get("Parts", [])]


def test_parts_go_out_once_5_mib_are_held_numbered_from_1_and_a_failure_aborts_them(monkeypatch, moto_s3):
    backend = _s3(monkeypatch, moto_s3)
    seen = []

    def download() -> Iterator[bytes]:
        for _ in range(5 * 1024):  # exactly one part, in 1 KiB chunks: sent as it fills
            yield b"a" * 1024
        seen.append(_parts(backend))
        yield b"b" * (3 * MIB)  # two chunks that pass the next 5 MiB without landing on it
        yield b"c" * (3 * MIB)
        seen.append(_parts(backend))
        raise RuntimeError("the download broke")

    with pytest.raises(RuntimeError, match="the download broke"):
        backend.put("jobs/x/big", download())
    assert seen == [[(1, 5 * MIB)], [(1, 5 * MIB), (2, 6 * MIB)]]
    # Aborted: S3 keeps (and bills) the parts of an upload left open.
    assert backend.client.list_multipart_uploads(Bucket=backend.bucket).get("Uploads", []) == []


@pytest.mark.parametrize("path, prefix", [("", ""), ("/results", "results/"), ("/a/b/", "a/b/"), ("//", "")])
def test_the_storage_urls_path_prefixes_every_key(monkeypatch, moto_s3, path, prefix):
    bucket = use_s3(monkeypatch, moto_s3).removeprefix("s3://").partition("/")[0]
    backend = _s3(monkeypatch, moto_s3, f"s3://{bucket}{path}")
    backend.put("jobs/x/a", [b"a"])
    listed = backend.client.list_objects_v2(Bucket=bucket)["Contents"]
    assert [item["Key"] for item in listed] == [f"{prefix}jobs/x/a"]
    assert backend.url == f"s3://{bucket}/{prefix}"


def test_a_reader_fetches_256_kib_at_a_time_and_only_a_move_starts_a_new_get(monkeypatch, moto_s3):
    backend = _s3(monkeypatch, moto_s3)
    data = bytes(range(256)) * 4096  # 1 MiB
    backend.put("jobs/x/r", [data])
    with backend.open("jobs/x/r") as reader:
        assert isinstance(reader, io.BufferedReader) and reader.tell() == 0
        assert reader.read(5) == data[:5]
        raw = reader.raw
        assert raw.tell() == 256 * 1024  # one buffer's worth came from S3, not the whole object
        backend.put("jobs/x/r", [data[::-1]])  # replaced behind the reader's back
        assert raw.seek(raw.tell()) == 256 * 1024  # not a move: the same GET goes on
        assert raw.read(3) == data[256 * 1024 : 256 * 1024 + 3]
        raw.seek(1000)  # a move: a GET from there, of what S3 holds now
        assert raw.read(3) == data[::-1][1000:1003]


def test_a_reader_past_either_end_of_the_object(monkeypatch, moto_s3):
    backend = _s3(monkeypatch, moto_s3)
    data = bytes(range(256)) * 8
    backend.put("jobs/x/e", [data])
    with backend.open("jobs/x/e") as reader:
        assert reader.seek(len(data) + 10) == len(data) + 10
        assert reader.read() == b""  # nothing there, and no GET (S3 would answer 416)
        assert reader.seek(-len(data) - 10, io.SEEK_END) == 0  # clamped to the start
        assert reader.read(4) == data[:4]


class _Refusing(BaseHTTPRequestHandler):
    """An S3 that refuses every request 403 with a long message (not retried)."""

    message = "".join(f"{i:04d}" for i in range(150))  # 600 characters, none alike in place

    def do_PUT(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = f"<Error><Code>AccessDenied</Code><Message>{self.message}</Message></Error>".encode()
        self.send_response(403)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:  # quiet
        pass


def test_a_refusing_s3_is_reported_in_200_characters(monkeypatch, moto_s3):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Refusing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = use_s3(monkeypatch, moto_s3)
        monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{server.server_address[1]}")
        backend = _s3(monkeypatch, moto_s3, url)
        with pytest.raises(backends.StorageUnavailable) as raised:
            backend.put("jobs/x/a", [b"a"])
    finally:
        server.shutdown()
        server.server_close()
    detail = str(raised.value).removeprefix(f"S3 {backend.url}: AccessDenied: ")
    assert detail.startswith("An error occurred (AccessDenied)") and len(detail) == 200


def test_the_client_gives_up_soon_the_storing_task_retries_later(monkeypatch, moto_s3):
    """Waiting out 60 s, or three answers with backoff between them, costs a test too
    much: the settings are read back from botocore instead."""
    config = _s3(monkeypatch, moto_s3).client.meta.config
    assert (config.connect_timeout, config.read_timeout) == (5, 60)
    assert config.retries == {"total_max_attempts": 3, "mode": "standard"}  # the first try, two retries


def test_without_boto3_an_s3_url_says_which_extra_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "boto3", None)  # as if the `s3` extra were not installed
    with pytest.raises(backends.StorageUnavailable, match=r"pip install 'falbridge\[s3\]'"):
        backends.open_backend("s3://bucket/results")
