"""POST /api/files through the real app, the sandbox standing in for fal storage; and
falbridge.Client sending a big input through it."""

from __future__ import annotations

import hashlib
import io
import uuid

import httpx
import pytest
from sqlalchemy import select

import falbridge
from falbridge.models.db import transaction
from falbridge.models.jobs import get_job, input_files_of
from falbridge.models.tables import JobInput
from falbridge.webhooks.api.uploads import MAX_PARTS
from falbridge.webhooks.app import create_app
from falbridge.worker.fal.upload import close_storage_client
from falbridge.worker.storage.backend import configured, input_key
from tests.plugins.db import config_with
from tests.plugins.pipeline import API_HEADERS, TEST_API_TOKEN, ServerThread
from tests.plugins.sandbox import TEST_FAL_KEY
from tests.sandbox.helpers import EVF_SAM, png_bytes


@pytest.fixture
def env(db_url, redis_url, sandbox, monkeypatch, tmp_path):
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("FALBRIDGE_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("FALBRIDGE_API_TOKENS", TEST_API_TOKEN)
    monkeypatch.setenv("FAL_KEY", TEST_FAL_KEY)
    monkeypatch.setenv("FAL_REST_URL", sandbox.url)
    monkeypatch.setenv("FAL_CDN_URL", sandbox.url)
    monkeypatch.setattr("falbridge.worker.actions.enqueue_follow_ups", lambda follow_ups: None)
    close_storage_client()
    yield sandbox
    close_storage_client()


@pytest.fixture
def client(env):
    client = create_app(config_with(FALBRIDGE_MAX_UPLOAD_BYTES="200000")).test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = API_HEADERS["Authorization"]
    return client


def post_file(client, data: bytes, name: str = "cat.png", field: str = "file"):
    return client.post(
        "/api/files", data={field: (io.BytesIO(data), name)}, content_type="multipart/form-data"
    )


def test_a_file_is_uploaded_and_described(client, env):
    data = png_bytes(50, 40) + b"\x00" * 5000
    answer = post_file(client, data, "../../évil name.png")
    assert answer.status_code == 201, answer.get_json()
    body = answer.get_json()
    assert body == {
        "url": body["url"],
        "sha256": hashlib.sha256(data).hexdigest(),
        "size": len(data),
        "content_type": "image/png",
    }
    assert body["url"].startswith(f"{env.url}/files/") and body["url"].endswith("/vil_name.png")
    assert httpx.get(body["url"]).content == data


def test_refusals_name_the_problem(client, env):
    too_big = post_file(client, b"x" * 200_001)
    assert too_big.status_code == 413
    assert too_big.get_json()["error"]["details"] == {
        "limit_bytes": 200_000,
        "setting": "FALBRIDGE_MAX_UPLOAD_BYTES",
    }
    assert post_file(client, b"x", field="image").get_json()["error"]["code"] == "invalid_request"
    extra = client.post(
        "/api/files", data={"file": (io.BytesIO(b"x"), "a"), "note": "hi"}, content_type="multipart/form-data"
    )
    assert extra.status_code == 201  # other fields are ignored, as an HTML form's
    two = client.post(
        "/api/files",
        data={"file": [(io.BytesIO(b"x"), "a"), (io.BytesIO(b"y"), "b")]},
        content_type="multipart/form-data",
    )
    assert two.status_code == 400 and "more than one" in two.get_json()["error"]["message"]
    crowded = client.post(
        "/api/files",
        data={"file": (io.BytesIO(b"x"), "a"), **{f"f{n}": "x" for n in range(MAX_PARTS)}},
        content_type="multipart/form-data",
    )
    assert crowded.status_code == 400, "a small form with too many parts is a bad request, not too large"
    assert f"more than {MAX_PARTS} parts" in crowded.get_json()["error"]["message"]
    not_form = client.post("/api/files", data=b"x", content_type="application/octet-stream")
    assert not_form.status_code == 400
    env.set_faults(upload_refused=1.0)
    refused = post_file(client, b"x")
    assert refused.status_code == 502 and refused.get_json()["error"]["code"] == "upload_failed"
    assert TEST_FAL_KEY not in refused.get_data(as_text=True)


def test_the_route_needs_the_token(env):
    anonymous = create_app().test_client()
    assert post_file(anonymous, b"x").status_code == 401


def test_client_sends_a_big_input_as_an_uploaded_url(env, tmp_path):
    image = tmp_path / "big.png"
    image.write_bytes(png_bytes(64, 64) + b"\x00" * 300_000)
    server = ServerThread(create_app()).start()
    try:
        with falbridge.Client(server.url, TEST_API_TOKEN) as client:
            job = client.submit(EVF_SAM, {"prompt": "cat", "image_url": image, "mask_only": True})
            uploaded = client.upload_file(b"\x89PNG\r\n\x1a\n tiny")
            env.set_faults(storage_auth_down=1.0)
            close_storage_client()  # a new process: no cached storage token
            with pytest.raises(falbridge.UploadFailed, match="503"):
                client.submit(EVF_SAM, {"prompt": "cat", "image_url": image})
    finally:
        server.stop()
    assert job.input["image_url"].startswith(f"{env.url}/files/")
    assert httpx.get(job.input["image_url"]).content == image.read_bytes()
    assert uploaded.size == 13 and uploaded.content_type == "image/png"


def test_a_job_naming_an_uploaded_url_records_its_digest_and_copy(client, env):
    data = png_bytes(50, 40) + b"\x00" * 5000
    body = post_file(client, data).get_json()
    digest = hashlib.sha256(data).hexdigest()

    def submit(image_url: str, external_id: str | None = None) -> dict:
        request = {"endpoint_id": EVF_SAM, "input": {"prompt": "cat", "image_url": image_url}}
        answer = client.post(
            "/api/jobs", json=request | ({"external_id": external_id} if external_id else {})
        )
        assert answer.status_code in (200, 202), answer.get_json()
        return answer.get_json()

    job = submit(body["url"], "same-file")
    foreign = submit("https://example.com/cat.png")
    again = post_file(client, data).get_json()  # the same bytes uploaded again: a new URL
    assert again["url"] != body["url"] and submit(again["url"], "same-file")["id"] == job["id"]
    with transaction() as s:
        [record] = input_files_of(get_job(s, job["id"], full=True))
        assert input_files_of(get_job(s, foreign["id"], full=True)) == []
        assert s.scalars(select(JobInput.job_id)).all() == [uuid.UUID(job["id"])]
    assert record == {
        "location": ["image_url"],
        "url": body["url"],
        "sha256": digest,
        "size": len(data),
        "content_type": "image/png",
        "storage_key": input_key(digest),
    }
    with configured().open(input_key(digest)) as kept:  # FALBRIDGE_VAR_DIR/files
        assert kept.read() == data
