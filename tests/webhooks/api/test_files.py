"""GET /api/jobs/<id>/files/<file_id>: falbridge's stored copy, on both backends, through
the real app (ETag, If-None-Match, Range, Content-Type and Content-Disposition, hostile
names and types, presigned redirects)."""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

import httpx
import pytest

from falbridge.webhooks.app import create_app
from falbridge.worker.storage.store import store_files
from tests.plugins.pipeline import API_HEADERS, TEST_API_TOKEN
from tests.plugins.storage import cdn_file
from tests.worker.storage.helpers import completed_job, detail, png, records


@pytest.fixture
def client(db_url, storage, monkeypatch, tmp_path):
    monkeypatch.setenv("FALBRIDGE_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("FALBRIDGE_API_TOKENS", TEST_API_TOKEN)
    return _authed_client()


def _authed_client():
    test_client = create_app().test_client()  # the app reads its configuration when made
    test_client.environ_base["HTTP_AUTHORIZATION"] = API_HEADERS["Authorization"]
    return test_client


def _stored_job(sandbox, data: bytes, **file_fields) -> tuple[str, dict]:
    job_id = completed_job({"image": cdn_file(sandbox, data, **file_fields)})
    store_files(job_id)
    [shown] = detail(job_id)["files"]
    return str(job_id), shown


def test_a_stored_image_is_served_inline_with_its_sha256_as_etag(sandbox, client):
    data = png(7, 3)
    _, shown = _stored_job(sandbox, data)

    answer = client.get(shown["download_url"])

    assert answer.status_code == 200 and answer.data == data
    assert answer.headers["Content-Type"] == "image/png"
    assert answer.headers["ETag"] == f'"{hashlib.sha256(data).hexdigest()}"'
    assert answer.headers["Content-Disposition"] == 'inline; filename="mask.png"'
    assert answer.headers["X-Content-Type-Options"] == "nosniff"
    assert answer.headers["Accept-Ranges"] == "bytes"
    assert int(answer.headers["Content-Length"]) == len(data)


def test_if_none_match_answers_304_and_a_range_206(sandbox, client):
    data = bytes(range(256)) * 40
    _, shown = _stored_job(sandbox, data, name="blob.bin", content_type="application/octet-stream")
    etag = f'"{shown["sha256"]}"'

    assert client.get(shown["download_url"], headers={"If-None-Match": etag}).status_code == 304
    ranged = client.get(shown["download_url"], headers={"Range": "bytes=1000-1009"})
    assert ranged.status_code == 206 and ranged.data == data[1000:1010]
    assert ranged.headers["Content-Range"] == f"bytes 1000-1009/{len(data)}"
    tail = client.get(shown["download_url"], headers={"Range": "bytes=-5"})
    assert tail.status_code == 206 and tail.data == data[-5:]
    assert client.get(shown["download_url"], headers={"Range": f"bytes={len(data)}-"}).status_code == 416


def test_hostile_names_and_types_are_neither_rendered_nor_injected(sandbox, client, storage):
    page = b"<html><script>document.cookie</script></html>"
    hostile_name = '../../../etc/passwd"\r\nSet-Cookie: stolen=1; x=.html'
    job_id, shown = _stored_job(
        sandbox, page, name="page.html", content_type="text/html", file_name=hostile_name
    )

    answer = client.get(shown["download_url"])

    assert answer.status_code == 200 and answer.data == page
    assert answer.headers["Content-Type"].startswith("text/plain")  # what it is, never text/html
    assert answer.headers["Content-Disposition"].startswith("attachment; ")
    assert (
        "\r" not in answer.headers["Content-Disposition"] and "/" not in answer.headers["Content-Disposition"]
    )
    assert "Set-Cookie" not in answer.headers and answer.headers["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in answer.headers["Content-Security-Policy"]
    [row] = records(uuid.UUID(job_id))
    assert (row.served_type, row.sniffed_type) == ("text/html", "text/plain")
    assert row.storage_key.startswith(f"jobs/{job_id}/image-") and ".." not in row.storage_key
    if storage.kind == "local":
        root = Path(storage.url.removeprefix("file://")).resolve()
        written = list(root.rglob("*"))
        assert written and all(p.resolve().is_relative_to(root) for p in written)


def test_a_name_that_is_not_ascii_goes_in_filename_star(sandbox, client):
    _, shown = _stored_job(
        sandbox, b"%PDF-1.4 x", name="d.pdf", content_type="application/pdf", file_name="résumé.pdf"
    )
    disposition = client.get(shown["download_url"]).headers["Content-Disposition"]
    assert disposition == "attachment; filename=\"resume.pdf\"; filename*=UTF-8''r%C3%A9sum%C3%A9.pdf"


def test_unknown_unstored_and_missing_files_answer_404_json(sandbox, client):
    job_id = completed_job({"image": cdn_file(sandbox, png()), "gone": cdn_file(sandbox, b"x", "g.bin")})
    files = {f["path"]: f for f in detail(job_id)["files"]}
    path = f"/api/jobs/{job_id}/files/{files['image']['id']}"

    assert client.get(path).get_json()["error"]["code"] == "not_stored"
    sandbox.reset()
    store_files(job_id)
    missing = client.get(path)
    assert missing.status_code == 404 and missing.get_json()["error"]["code"] == "file_missing"
    assert "HTTP 404" in missing.get_json()["error"]["details"]["reason"]
    for bad in ("999999", "abc", "-1", "9" * 40):
        answer = client.get(f"/api/jobs/{job_id}/files/{bad}")
        assert answer.status_code == 404 and answer.get_json()["error"]["code"] == "not_found"
    other = "00000000-0000-0000-0000-000000000000"
    assert client.get(f"/api/jobs/{other}/files/{files['image']['id']}").status_code == 404


def test_the_route_needs_the_api_token(sandbox, client):
    _, shown = _stored_job(sandbox, png())
    assert (
        client.get(
            shown["download_url"], headers={"Authorization": "Bearer wrong-token-0123456789"}
        ).status_code
        == 401
    )


def test_s3_can_redirect_to_a_presigned_url(sandbox, client, storage, monkeypatch):
    if storage.kind != "s3":
        pytest.skip("presigned URLs are S3's")
    data = png(4, 4)
    _, shown = _stored_job(sandbox, data)
    monkeypatch.setenv("FALBRIDGE_STORAGE_PRESIGN_S", "60")

    answer = _authed_client().get(shown["download_url"])

    assert answer.status_code == 302 and answer.headers["X-Content-Type-Options"] == "nosniff"
    fetched = httpx.get(answer.headers["Location"])
    assert fetched.status_code == 200 and fetched.content == data
    assert fetched.headers["content-disposition"] == 'inline; filename="mask.png"'
