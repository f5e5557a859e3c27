"""fal's own Python client (`fal-client`, pinned in the dev extra) against the sandbox behind
a TLS front, as a user of the official client would point it at an emulator.

fal-client is https-only and reads its hosts once at import (FAL_QUEUE_RUN_HOST, FAL_RUN_HOST);
the storage hosts (REST_URL, CDN_URL) have no variable at all (docs/fal-protocol.md, "Base
URLs"). So the test sets the module constants those values end up in, and trusts a throwaway
CA through SSL_CERT_FILE. Only here: falbridge's own queue path keeps its httpx client.
"""

from __future__ import annotations

import hashlib
import os
import ssl

import fal_client
import fal_client.client as fal_module
import httpx
import pytest

from tests.plugins.sandbox import TEST_FAL_KEY
from tests.sandbox.helpers import ECHO, EVF_SAM, png_bytes
from tests.sandbox.tls_front import TlsFront, make_certificates


@pytest.fixture(scope="module")
def certificates(tmp_path_factory):
    return make_certificates(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def front(sandbox_server, certificates):
    with TlsFront(sandbox_server.url, certificates) as tls:
        yield tls


@pytest.fixture
def fal(sandbox, front, certificates, monkeypatch):
    """A fal_client.SyncClient whose every host is the TLS front."""
    origin = f"https://{front.host}"
    monkeypatch.setenv("SSL_CERT_FILE", str(certificates.ca_file))
    monkeypatch.setenv("FAL_QUEUE_RUN_HOST", front.host)
    monkeypatch.setenv("FAL_RUN_HOST", f"{front.host}/_run")
    # What fal_client.auth derived from the two variables at import time:
    monkeypatch.setattr(fal_module, "QUEUE_URL_FORMAT", f"https://{os.environ['FAL_QUEUE_RUN_HOST']}/")
    monkeypatch.setattr(fal_module, "RUN_URL_FORMAT", f"https://{os.environ['FAL_RUN_HOST']}/")
    monkeypatch.setattr(fal_module, "REST_URL", origin)
    monkeypatch.setattr(fal_module, "CDN_URL", origin)
    front.forwarded.clear()
    return fal_client.SyncClient(key=TEST_FAL_KEY, default_timeout=30.0)


def fetch(url, certificates) -> bytes:
    response = httpx.get(url, verify=ssl.create_default_context(cafile=certificates.ca_file))
    response.raise_for_status()
    return response.content


def test_submit_status_result_through_the_official_client(fal, front, sandbox, certificates):
    image_url = fal.upload(png_bytes(64, 48), "image/png", file_name="cat.png")
    assert image_url.startswith(f"https://{front.host}/files/")

    handle = fal.submit(EVF_SAM, {"prompt": "cat", "image_url": image_url})
    for url in (handle.status_url, handle.response_url, handle.cancel_url):
        assert url.startswith(f"https://{front.host}/fal-ai/evf-sam/requests/")
    result = handle.get()
    assert result["image"]["url"].startswith(f"https://{front.host}/files/")
    assert fetch(result["image"]["url"], certificates)[:8] == b"\x89PNG\r\n\x1a\n"
    assert isinstance(fal.status(EVF_SAM, handle.request_id), fal_client.Completed)
    assert fal.result(EVF_SAM, handle.request_id) == result
    seen = sandbox.request(handle.request_id)
    assert seen["input"]["image_url"] == image_url and seen["outcome"] == "OK"


def test_cancel_through_the_official_client(fal, sandbox):
    sandbox.set_config(concurrency=1, latency_s=2.0)
    running = fal.submit(ECHO, {"n": 1})
    queued = fal.submit(ECHO, {"n": 2})
    assert isinstance(queued.status(), fal_client.Queued)
    queued.cancel()
    with pytest.raises(fal_client.FalClientHTTPError) as finished:
        sandbox.set_config(latency_s=0.0)
        running.get()
        fal.cancel(ECHO, running.request_id)
    assert finished.value.status_code == 400
    assert sandbox.request(queued.request_id)["outcome"] == "CANCELLED"


def test_upload_file_and_the_fallback_repository(fal, front, tmp_path, certificates):
    path = tmp_path / "input.png"
    path.write_bytes(png_bytes(10, 10))
    url = fal.upload_file(path)
    assert url.endswith("/input.png") and fetch(url, certificates) == path.read_bytes()

    via_rest = fal.upload(b"plain bytes", "text/plain", file_name="note.txt", repository="fal")
    assert fetch(via_rest, certificates) == b"plain bytes"
    assert {"method": "POST", "path": "/storage/upload/initiate?storage_type=gcs"} in front.forwarded


def test_large_uploads_go_multipart(fal, front, certificates, monkeypatch):
    # fal-client switches at 100 MiB in 10 MiB parts; scaled down, the calls are the same.
    monkeypatch.setattr(fal_module, "MULTIPART_THRESHOLD", 1024 * 1024)
    monkeypatch.setattr(fal_module, "MULTIPART_CHUNK_SIZE", 256 * 1024)
    data = os.urandom(3 * 1024 * 1024 + 5)
    url = fal.upload(data, "application/octet-stream", file_name="big.bin")
    assert hashlib.sha256(fetch(url, certificates)).hexdigest() == hashlib.sha256(data).hexdigest()
    part_puts = [f for f in front.forwarded if f["method"] == "PUT" and "/multipart/" in f["path"]]
    assert len(part_puts) == 13
    assert any(f["path"].endswith("/complete") for f in front.forwarded)


def test_storage_failures_reach_the_official_client(fal, sandbox):
    sandbox.set_faults(storage_auth_down=1.0)
    with pytest.raises(httpx.HTTPStatusError) as down:
        fal.upload(b"x", "text/plain", repository="fal_v3", fallback_repository=[])
    assert down.value.response.status_code == 503


def test_run_is_synchronous(fal, sandbox):
    assert fal.run(ECHO, {"n": 3}) == {"endpoint_id": ECHO, "echo": {"n": 3}}
    with pytest.raises(fal_client.FalClientHTTPError) as invalid:
        fal.run(EVF_SAM, {})
    assert invalid.value.status_code == 422
    assert all(r["webhook_url"] is None for r in sandbox.ground_truth()["requests"])
