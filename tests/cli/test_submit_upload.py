"""The issue's done-when: `falbridge submit fal-ai/evf-sam --image big.png` with a 30 MB file
sends fal a storage URL, not a data URI; the worker submits it and the sandbox's model reads
the uploaded file."""

from __future__ import annotations

import hashlib

import httpx
import pytest
from click.testing import CliRunner

from falbridge.cli import main
from falbridge.models.jobs import input_files_of
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
