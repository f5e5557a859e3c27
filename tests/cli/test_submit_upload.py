"""The issue's done-when: `falbridge submit fal-ai/evf-sam --image big.png` with a 30 MB file
sends fal a storage URL, not a data URI; the worker submits it and the sandbox's model reads
the uploaded file."""

from __future__ import annotations

import hashlib

import httpx
import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from falbridge.cli import main
from falbridge.models.db import transaction
from falbridge.models.jobs import input_files_of
from falbridge.models.tables import Job
from falbridge.worker.fal.upload import close_storage_client
from tests.plugins.sandbox import TEST_FAL_KEY
from tests.sandbox.helpers import EVF_SAM, png_bytes

SIZE = 30 * 1024 * 1024


def png_ish(path, size: int):
    """A PNG header and image data a model can size, padded to `size` bytes."""
    head = png_bytes(64, 48)
    with path.open("wb") as out:
        out.write(head)
        out.truncate(size)  # zeros after the PNG's end: "PNG-ish"
    return path


@pytest.mark.slow
def test_submit_with_a_30_mb_image_sends_a_storage_url(pipeline, tmp_path):
    image = png_ish(tmp_path / "big.png", SIZE)
    result = CliRunner().invoke(main, ["submit", EVF_SAM, "--prompt", "cat", "--image", str(image)])
    assert result.exit_code == 0, result.output
    job_id = result.stdout.split()[0]
    job = pipeline.wait_terminal(job_id, timeout=60)[0]
    assert job.status == "completed", job.error

    url = job.input["image_url"]
    assert url.startswith(f"{pipeline.sandbox.url}/files/") and url.endswith("/big.png")
    [record] = input_files_of(job)
    digest = hashlib.sha256(image.read_bytes()).hexdigest()
    assert (record["sha256"], record["size"]) == (digest, SIZE)

    received = pipeline.sandbox.request(job.request_id)
    assert received["input"]["image_url"] == url  # what fal got: the URL, no data URI
    assert received["outcome"] == "OK"
    assert hashlib.sha256(httpx.get(url, timeout=30).content).hexdigest() == digest


@pytest.fixture
def cli_env(db_url, redis_url, sandbox, monkeypatch, tmp_path):
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("FALBRIDGE_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("FAL_KEY", TEST_FAL_KEY)
    monkeypatch.setenv("FAL_REST_URL", sandbox.url)
    monkeypatch.setenv("FAL_CDN_URL", sandbox.url)
    close_storage_client()
    yield sandbox
    close_storage_client()


def test_a_failed_upload_is_one_error_line_and_no_job(cli_env, tmp_path):
    cli_env.set_faults(storage_auth_down=1.0)
    image = png_ish(tmp_path / "big.png", 1024 * 1024)
    result = CliRunner().invoke(main, ["submit", EVF_SAM, "--prompt", "cat", "--image", str(image)])
    assert result.exit_code == 1, result.output
    assert (
        result.stderr.startswith("error: uploading an input file to fal storage failed")
        and "503" in result.stderr
    )
    assert len(result.stderr.splitlines()) == 1 and TEST_FAL_KEY not in result.output
    with transaction() as s:
        assert s.scalar(select(func.count()).select_from(Job)) == 0
