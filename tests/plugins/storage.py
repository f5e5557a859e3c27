"""Storage fixtures: the two backends result files are stored in.

- `moto_s3` (session): moto's S3 server as a separate process over HTTP (`moto_server`),
  the stand-in for S3 (README, "Tests"); `MotoServer.start()` gives a throwaway one that
  a test may stop.
- `storage` (function, parametrized local / s3): FALBRIDGE_STORAGE_URL pointing at a fresh
  directory or a fresh bucket, loopback downloads allowed (the sandbox's CDN); unless the
  test runs the pipeline, no dispatcher (a completed job's files wait for a `store_files`
  call, as with the broker down).
- `cdn_file(sandbox, data, ...)`: a file on the sandbox's stand-in for fal's CDN, as the
  File object a model output holds.
"""

from __future__ import annotations

import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from falbridge.devstack.services import free_port
from tests.plugins.waiting import poll_until

__all__ = ["MotoServer", "cdn_file", "moto_s3", "storage"]

AWS_TEST_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


class MotoServer:
    """`moto_server` in its own process, on a free loopback port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> MotoServer:
        executable = Path(sys.executable).with_name("moto_server")
        self.process = subprocess.Popen(
            [str(executable), "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        poll_until(self._answers, bool, 30.0, lambda _: "moto_server did not answer within 30 s")
        return self

    def _answers(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise RuntimeError(f"moto_server exited with {self.process.returncode}")
        try:
            httpx.get(self.url + "/moto-api/", timeout=1.0)
        except httpx.TransportError:
            return False
        return True

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)

    def new_bucket(self) -> str:
        import boto3

        name = f"falbridge-{secrets.token_hex(6)}"
        boto3.client("s3", endpoint_url=self.url, **_credentials()).create_bucket(Bucket=name)
        return name


def _credentials() -> dict[str, str]:
    return {
        "aws_access_key_id": AWS_TEST_ENV["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": AWS_TEST_ENV["AWS_SECRET_ACCESS_KEY"],
        "region_name": AWS_TEST_ENV["AWS_DEFAULT_REGION"],
    }


@pytest.fixture(scope="session")
def moto_s3() -> Iterator[MotoServer]:
    server = MotoServer().start()
    try:
        yield server
    finally:
        server.stop()


@dataclass
class Storage:
    kind: str  # "local" or "s3"
    url: str
    moto: MotoServer | None = None


def use_s3(monkeypatch: pytest.MonkeyPatch, server: MotoServer) -> str:
    for name, value in AWS_TEST_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_ENDPOINT_URL", server.url)
    return f"s3://{server.new_bucket()}/results"


@pytest.fixture(params=["local", "s3"])
def storage(request, tmp_path, monkeypatch) -> Iterator[Storage]:
    from falbridge.worker.storage import dispatch

    if request.param == "s3":
        moto = request.getfixturevalue("moto_s3")
        found = Storage("s3", use_s3(monkeypatch, moto), moto)
    else:
        found = Storage("local", f"file://{tmp_path / 'files'}")
    monkeypatch.setenv("FALBRIDGE_STORAGE_URL", found.url)
    monkeypatch.setenv("FALBRIDGE_FETCH_ALLOW_PRIVATE", "1")
    monkeypatch.setenv("FALBRIDGE_STORE_FILES", "all")  # the pipeline's default is none
    if "pipeline" in request.fixturenames:  # the worker stores, as deployed
        yield found
        return
    previous = dispatch.set_dispatcher(None)
    try:
        yield found
    finally:
        dispatch.set_dispatcher(previous)


def cdn_file(
    sandbox: Any, data: bytes, name: str = "mask.png", content_type: str = "image/png", **fields: Any
) -> dict[str, Any]:
    """`data` on the sandbox's CDN, described as fal describes a File (fields override)."""
    described = sandbox.server.core.files.put(sandbox.url, name, content_type, data)
    return {**described, **fields}
