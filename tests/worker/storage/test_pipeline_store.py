"""End to end: an EVF-SAM job through the whole pipeline (the sandbox as fal, the receiver,
a Celery worker), its mask stored by the worker's own task after the job completed, then
downloadable from falbridge after the sandbox has forgotten it: over the HTTP API, with
`falbridge jobs download` on the database and over the API; and a stored copy that no
longer has its recorded sha256 is reported, not saved."""

from __future__ import annotations

import base64
import hashlib
import uuid
from pathlib import Path

import boto3
import httpx
import pytest
from click.testing import CliRunner

from falbridge.cli import main
from falbridge.demo import CAT
from falbridge.worker.actions import submit
from tests.plugins.pipeline import API_HEADERS, TEST_API_TOKEN
from tests.plugins.waiting import poll_until
from tests.worker.storage.helpers import detail, records

pytestmark = pytest.mark.slow


def _stored(job_id: uuid.UUID) -> dict:
    return poll_until(
        lambda: detail(job_id),
        lambda job: job["files"] and all(f["status"] for f in job["files"]),
        20.0,
        lambda job: f"files not stored: {[(f['path'], f['status']) for f in job['files']]}",
    )


def _corrupt(storage, key: str) -> None:
    if storage.kind == "local":
        (Path(storage.url.removeprefix("file://")) / key).write_bytes(b"not the mask")
        return
    bucket, _, prefix = storage.url.removeprefix("s3://").partition("/")
    boto3.client("s3", endpoint_url=storage.moto.url).put_object(
        Bucket=bucket, Key=f"{prefix}/{key}", Body=b"not the mask"
    )


def test_a_mask_is_downloadable_from_falbridge_after_the_sandbox_deleted_it(
    pipeline, storage, sandbox, monkeypatch, tmp_path
):
    image = "data:image/png;base64," + base64.b64encode(CAT.read_bytes()).decode()
    job, _ = submit("fal-ai/evf-sam", {"prompt": "cat", "image_url": image})
    pipeline.wait_status(job.id, "completed")
    shown = _stored(job.id)
    [mask] = shown["files"]
    assert mask["status"] == "stored" and shown["status"] == "completed"
    # The files-stored event is there; not asserted to be the last one: one CI run on
    # PostgreSQL listed a webhook-sourced event after it (open question in the stop note).
    assert "store" in [e["source"] for e in shown["events"]]
    fal_copy = httpx.get(mask["fal_url"]).content

    sandbox.reset()  # the sandbox deletes every file it served
    assert httpx.get(mask["fal_url"]).status_code == 404

    served = httpx.get(pipeline.receiver_url + mask["download_url"], headers=API_HEADERS)
    assert served.status_code == 200 and served.content == fal_copy
    assert hashlib.sha256(served.content).hexdigest() == mask["sha256"]
    runner = CliRunner()
    table = runner.invoke(main, ["jobs", "show", str(job.id)]).stdout
    assert f"{mask['download_url']} sha256:{mask['sha256'][:12]}" in table
    in_process = runner.invoke(main, ["jobs", "download", str(job.id), "--to", str(tmp_path / "db")])
    assert in_process.exit_code == 0, in_process.output
    assert Path(in_process.stdout.strip()).read_bytes() == fal_copy
    monkeypatch.setenv("FALBRIDGE_API_TOKEN", TEST_API_TOKEN)
    over_api = [
        "--api",
        pipeline.receiver_url,
        "jobs",
        "download",
        str(job.id),
        "--to",
        str(tmp_path / "api"),
    ]
    remote = runner.invoke(main, over_api)
    assert remote.exit_code == 0, remote.output
    assert Path(remote.stdout.strip()).read_bytes() == fal_copy

    [row] = records(job.id)
    _corrupt(storage, row.storage_key)
    broken = runner.invoke(main, ["jobs", "download", str(job.id), "--to", str(tmp_path / "again")])
    assert broken.exit_code == 1 and "sha256 mismatch" in broken.stderr
    assert not list((tmp_path / "again").rglob("*.png"))
