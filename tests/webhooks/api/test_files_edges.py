"""The edges of the file routes (webhooks/api/files.py): which file ids are read and which
are refused before the database sees them, the copies of a job's input files (only the
digests its input recorded, served as recorded), storage that lost an object or is down,
and the names a browser saves a file as."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import uuid
from typing import Any

import pytest

from falbridge.webhooks.api.files import content_disposition, download_name
from falbridge.webhooks.app import create_app
from falbridge.worker.fal.upload import Uploaded
from falbridge.worker.input_copies import keep_input_copy
from falbridge.worker.storage.store import store_files
from tests.plugins.pipeline import API_HEADERS, TEST_API_TOKEN
from tests.plugins.storage import cdn_file
from tests.webhooks.dashboard.helpers import EVF_SAM, make_job
from tests.worker.storage.helpers import completed_job, detail, png

LARGEST_FILE_ID = 2**63 - 1  # PostgreSQL's bigint

# One backend: what these tests pin is the route's, the same over both.
local_storage = pytest.mark.parametrize("storage", ["local"], indirect=True)


@pytest.fixture
def client(db_url, storage, monkeypatch, tmp_path):
    monkeypatch.setenv("FALBRIDGE_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("FALBRIDGE_API_TOKENS", TEST_API_TOKEN)
    test_client = create_app().test_client()
    test_client.environ_base["HTTP_AUTHORIZATION"] = API_HEADERS["Authorization"]
    return test_client


def _error(answer) -> tuple[int, str, str]:
    error = answer.get_json()["error"]
    return answer.status_code, error["code"], error["message"]


@local_storage
def test_a_file_id_is_read_up_to_the_largest_bigint_and_19_digits(sandbox, client):
    data = png(2, 5)
    job_id = completed_job({"image": cdn_file(sandbox, data)})
    store_files(job_id)
    [shown] = detail(job_id)["files"]
    files = f"/api/jobs/{job_id}/files"

    padded = str(shown["id"]).zfill(19)  # leading zeros: still the number
    assert client.get(f"{files}/{padded}").data == data
    for width in (20, 21):  # past 19 digits: refused as it is, never parsed
        too_long = str(shown["id"]).zfill(width)
        assert _error(client.get(f"{files}/{too_long}")) == (
            404,
            "not_found",
            f"no file {too_long!r} in job {job_id}",
        )
    # The largest id is looked up (no such file); one more never reaches the database.
    assert _error(client.get(f"{files}/{LARGEST_FILE_ID}")) == (
        404,
        "not_found",
        f"no file {LARGEST_FILE_ID} in job {job_id}",
    )
    assert _error(client.get(f"{files}/{LARGEST_FILE_ID + 1}")) == (
        404,
        "not_found",
        f"no file '{LARGEST_FILE_ID + 1}' in job {job_id}",
    )
    assert _error(client.get(f"{files}/{'x' * 40}")) == (
        404,
        "not_found",
        f"no file {'x' * 32!r} in job {job_id}",
    )


@local_storage
def test_a_file_not_stored_yet_answers_404(sandbox, client):
    job_id = completed_job({"image": cdn_file(sandbox, png())})
    [shown] = detail(job_id)["files"]
    assert _error(client.get(f"/api/jobs/{job_id}/files/{shown['id']}")) == (
        404,
        "not_stored",
        "file image is not stored (yet)",
    )


def _kept(data: bytes, content_type: str, **where: Any) -> dict[str, Any]:
    """An upload through falbridge, its copy kept, as a job's input records it."""
    uploaded = Uploaded(f"https://v3.fal.media/files/{uuid.uuid4().hex}", _sha(data), len(data), content_type)
    keep_input_copy(io.BytesIO(data), uploaded)
    return {**where, **dataclasses.asdict(uploaded)}


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _three_digests_in_order() -> list[bytes]:
    """Three payloads, sorted by their sha256 (the digests the lookup compares)."""
    return sorted((png(n, 1) for n in range(1, 4)), key=_sha)


@local_storage
def test_each_input_copy_is_served_as_the_job_recorded_it(client):
    low, middle, high = _three_digests_in_order()
    first = _kept(middle, "image/png", location=["image_url"])
    second = _kept(low, "application/pdf", location=["refs", 0])
    third = _kept(high, "image/png")
    del third["content_type"]  # a record without a type or a place: served as bytes, "input"
    recorded = [first, second, third]  # not in digest order: the lookup is by equality
    job_id = make_job(EVF_SAM, {"prompt": "cat", "image_url": first["url"]}, input_files=recorded)

    expected = [
        (middle, "image/png", 'inline; filename="image_url"'),
        (low, "application/pdf", 'attachment; filename="refs_0"'),
        (high, "application/octet-stream", 'attachment; filename="input"'),
    ]
    for data, content_type, disposition in expected:
        answer = client.get(f"/api/jobs/{job_id}/inputs/{_sha(data)}")
        assert answer.status_code == 200 and answer.data == data
        assert answer.headers["Content-Type"] == content_type
        assert answer.headers["Content-Disposition"] == disposition
        assert answer.headers["ETag"] == f'"{_sha(data)}"'
        assert answer.headers["Content-Length"] == str(len(data))


@local_storage
def test_an_input_the_job_did_not_record_answers_404(client):
    data = png(4, 1)
    kept = _kept(data, "image/png", location=["image_url"])
    job_id = make_job(EVF_SAM, input_files=[kept])
    inputs = f"/api/jobs/{job_id}/inputs"

    unknown = "ab" * 50  # longer than a digest: the message shows its first 64 characters
    assert _error(client.get(f"{inputs}/{unknown}")) == (
        404,
        "not_found",
        f"job {job_id} has no input file {unknown[:64]!r}",
    )
    other = make_job(EVF_SAM)
    assert _error(client.get(f"/api/jobs/{other}/inputs/{_sha(data)}"))[:2] == (404, "not_found")
    sized_as_text = make_job(EVF_SAM, input_files=[{**kept, "size": str(len(data))}])
    assert _error(client.get(f"/api/jobs/{sized_as_text}/inputs/{_sha(data)}"))[:2] == (404, "not_found")


@local_storage
def test_an_input_whose_copy_storage_lost_answers_404_file_gone(client):
    data = png(5, 1)
    recorded = {"location": ["image_url"], "url": "https://v3.fal.media/files/x", "sha256": _sha(data)}
    job_id = make_job(EVF_SAM, input_files=[{**recorded, "size": len(data), "content_type": "image/png"}])

    assert _error(client.get(f"/api/jobs/{job_id}/inputs/{_sha(data)}")) == (
        404,
        "file_gone",
        "file image_url was stored, but storage no longer has it",
    )


@local_storage
def test_storage_that_is_down_answers_503(client, monkeypatch, tmp_path):
    data = png(6, 1)
    job_id = make_job(EVF_SAM, input_files=[_kept(data, "image/png", location=["image_url"])])
    blocker = tmp_path / "blocker"
    blocker.write_bytes(b"not a directory")
    monkeypatch.setenv("FALBRIDGE_STORAGE_URL", f"file://{blocker}/files")

    status, code, message = _error(client.get(f"/api/jobs/{job_id}/inputs/{_sha(data)}"))

    assert (status, code) == (503, "storage_unavailable") and message.startswith(
        f"cannot read file://{blocker}"
    )


def test_a_download_name_is_cut_at_150_characters():
    assert download_name("a" * 150, "image") == "a" * 150
    assert download_name("b" * 151, "image") == "b" * 150
    assert download_name(None, "images[0]") == "images_0"
    assert content_disposition("ok.png", inline=True) == 'inline; filename="ok.png"'
    with pytest.raises(TypeError):  # `inline` by name only: a bare True says nothing at the call
        content_disposition("ok.png", True)  # type: ignore[misc]
