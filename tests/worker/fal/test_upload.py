"""Uploads to fal storage (falbridge.worker.fal.upload) against the sandbox's storage API:
what arrives, how big files go in parts, and how failures are classified."""

from __future__ import annotations

import hashlib
import io
import subprocess
import sys

import httpx
import pytest

from falbridge.worker.fal import FalConfigError, FinalError, RetryableError
from falbridge.worker.fal.upload import StorageClient
from tests.plugins.db import free_port
from tests.plugins.sandbox import TEST_FAL_KEY


@pytest.fixture
def storage(sandbox):
    with StorageClient(sandbox.url, sandbox.url, TEST_FAL_KEY) as client:
        yield client


def upload(client: StorageClient, data: bytes, name: str = "in.png", content_type: str = "image/png"):
    return client.upload(io.BytesIO(data), len(data), content_type, name)


def test_a_whole_upload_arrives_intact_with_its_digest(storage, sandbox):
    data = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40
    done = upload(storage, data)
    assert done.url.startswith(f"{sandbox.url}/files/") and done.url.endswith("/in.png")
    assert (done.sha256, done.size, done.content_type) == (
        hashlib.sha256(data).hexdigest(),
        len(data),
        "image/png",
    )
    served = httpx.get(done.url)
    assert served.content == data and served.headers["content-type"] == "image/png"


def test_big_files_go_in_parts(sandbox):
    data = bytes(range(256)) * 1200  # 300 KiB: five parts of 64 KiB
    with StorageClient(
        sandbox.url, sandbox.url, TEST_FAL_KEY, multipart_bytes=100_000, part_bytes=65_536
    ) as c:
        done = upload(c, data, "big.bin", "application/octet-stream")
    assert done.sha256 == hashlib.sha256(data).hexdigest()
    assert httpx.get(done.url).content == data


def test_upload_reads_from_the_streams_position_and_only_size_bytes(storage):
    stream = io.BytesIO(b"HEADERpayload-tail")
    stream.seek(6)
    done = storage.upload(stream, 7, "text/plain", "p.txt")
    assert httpx.get(done.url).content == b"payload"


def test_a_file_shorter_than_announced_is_a_final_error(storage):
    with pytest.raises(FinalError, match="ended"):
        storage.upload(io.BytesIO(b"abc"), 10, "text/plain", "short.txt")


def test_storage_auth_down_is_retryable(storage, sandbox):
    sandbox.set_faults(storage_auth_down=1.0)
    with pytest.raises(RetryableError) as down:
        upload(storage, b"x")
    assert down.value.status_code == 503 and "storage/auth/token" in str(down.value)
    assert TEST_FAL_KEY not in repr(down.value)


def test_a_refused_upload_is_final_and_a_throttled_one_retryable(storage, sandbox):
    sandbox.set_faults(upload_refused=1.0, upload_refused_status=403)
    with pytest.raises(FinalError) as refused:
        upload(storage, b"x")
    assert refused.value.status_code == 403 and "refused" in str(refused.value)
    sandbox.set_faults(upload_refused_status=429)
    with pytest.raises(RetryableError):
        upload(storage, b"x")


def test_the_token_is_reused_until_it_expires(storage, sandbox):
    upload(storage, b"one")
    sandbox.set_faults(storage_auth_down=1.0)  # a second token request would now fail
    assert httpx.get(upload(storage, b"two").url).content == b"two"


def test_unreachable_storage_is_retryable_and_a_missing_key_a_config_error(sandbox):
    closed = f"http://127.0.0.1:{free_port()}"
    with (
        StorageClient(closed, closed, TEST_FAL_KEY) as client,
        pytest.raises(RetryableError, match="not sent"),
    ):
        upload(client, b"x")
    with pytest.raises(FalConfigError):
        StorageClient(sandbox.url, sandbox.url, None)


_MEASURE = """
import sys
from pathlib import Path
from falbridge.worker.fal.upload import StorageClient

def rss_kib():
    return int(next(l for l in open("/proc/self/status") if l.startswith("VmRSS")).split()[1])

url, key, path, multipart = sys.argv[1], sys.argv[2], Path(sys.argv[3]), int(sys.argv[4])
with StorageClient(url, url, key, multipart_bytes=multipart) as client:
    client.upload(open(path, "rb"), 100, "image/png", "warm.png")  # imports, token, connection
    before = rss_kib()
    with path.open("rb") as source:
        client.upload(source, path.stat().st_size, "image/png", "big.png")
    print(rss_kib() - before)
"""


@pytest.mark.parametrize("multipart_bytes", [100 * 1024 * 1024, 1024 * 1024], ids=["whole", "parts"])
def test_a_30_mb_upload_is_streamed_not_held(sandbox, tmp_path, multipart_bytes):
    path = tmp_path / "big.png"
    with path.open("wb") as out:
        out.write(b"\x89PNG\r\n\x1a\n")
        out.truncate(30 * 1024 * 1024)
    # In its own process, so the sandbox's copy of the file is not counted.
    growth_kib = int(
        subprocess.run(
            [sys.executable, "-c", _MEASURE, sandbox.url, TEST_FAL_KEY, str(path), str(multipart_bytes)],
            check=True,
            capture_output=True,
            text=True,
            timeout=120,
        ).stdout
    )
    assert growth_kib < 8 * 1024, f"RSS grew {growth_kib} KiB uploading 30 MB"
