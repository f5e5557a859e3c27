import base64
import hashlib
import io
import json
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from falbridge.models.db import transaction
from falbridge.models.jobs import input_files_of
from falbridge.models.tables import Job, JobInput
from falbridge.worker.accept import Accepted, ExternalIdConflict, SubmitItem, UploadFailed, accept
from falbridge.worker.fal import InputValidationError
from falbridge.worker.fal.upload import StorageClient, close_storage_client
from falbridge.worker.input_files import (
    MAX_INLINE_BYTES,
    inline_local_files,
    path_to_data_uri,
    prepare_input_files,
    to_data_uri,
    with_digests,
)
from falbridge.worker.storage.backend import input_key, open_backend
from tests.plugins.sandbox import TEST_FAL_KEY
from tests.sandbox.helpers import EVF_SAM, png_bytes

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16


def _accept(endpoint_id: str, input: dict, **fields) -> Accepted:
    return accept(SubmitItem(endpoint_id, input, **fields))


def test_bytes_and_paths_become_data_uris_strings_stay(tmp_path):
    image = tmp_path / "cat.png"
    image.write_bytes(PNG)
    out = inline_local_files(
        {"image_url": image, "mask": PNG, "prompt": "cat.png", "nested": [{"u": Path(image)}]}
    )
    assert out["image_url"].startswith("data:image/png;base64,")
    assert out["mask"] == out["image_url"]
    assert out["prompt"] == "cat.png"  # a string is never guessed to be a path
    assert out["nested"][0]["u"] == out["image_url"]


def test_jpeg_sniffed_and_unknown_falls_back():
    assert to_data_uri(b"\xff\xd8\xff\xe0abc").startswith("data:image/jpeg;base64,")
    assert to_data_uri(b"hello").startswith("data:application/octet-stream;base64,")


def test_missing_and_oversized_files_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="no such file"):
        path_to_data_uri(tmp_path / "nope.png")
    with pytest.raises(ValueError, match="limited to"):
        to_data_uri(b"\x00" * (MAX_INLINE_BYTES + 1))


# -- uploads to fal storage (the sandbox's) --------------------------------------------


@pytest.fixture
def uploader(sandbox):
    with StorageClient(sandbox.url, sandbox.url, TEST_FAL_KEY) as client:
        yield client


def test_files_above_the_threshold_are_uploaded_smaller_ones_inlined(uploader, tmp_path):
    big, small = tmp_path / "big.png", PNG
    big.write_bytes(PNG + bytes(range(256)) * 8)
    with io.BytesIO(b"GIF89a" + b"\x01" * 3000) as handle:
        out, files = prepare_input_files(
            {"image_url": big, "mask": small, "frames": ["https://e.com/a.png", handle]},
            uploader.upload,
            threshold=1024,
        )
    assert out["mask"].startswith("data:image/png;base64,")
    assert out["frames"][0] == "https://e.com/a.png"
    assert [f.location for f in files] == [("image_url",), ("frames", 1)]
    assert out["image_url"] == files[0].url and out["image_url"].endswith("/big.png")
    assert httpx.get(out["image_url"]).content == big.read_bytes()
    assert files[0].sha256 == hashlib.sha256(big.read_bytes()).hexdigest()
    assert (files[1].content_type, files[1].size) == ("image/gif", 3006)
    assert httpx.get(out["frames"][1]).content[:6] == b"GIF89a"


def test_without_an_uploader_big_files_are_refused(tmp_path):
    with pytest.raises(ValueError, match="need an upload"):
        prepare_input_files({"a": b"x" * 10}, None, threshold=5)


def test_digests_stand_in_for_urls_when_inputs_are_compared():
    records = [{"location": ["frames", 1], "sha256": "abc"}, {"location": ["gone"], "sha256": "d"}]
    value = {"frames": ["https://e/a", "https://cdn/1"], "prompt": "p"}
    assert with_digests(value, records) == {"frames": ["https://e/a", "sha256:abc"], "prompt": "p"}


@pytest.fixture
def fal_storage(db_url, sandbox, monkeypatch, tmp_path):
    """accept() with this test's database and the sandbox as fal storage."""
    monkeypatch.setenv("FAL_KEY", TEST_FAL_KEY)
    monkeypatch.setenv("FAL_REST_URL", sandbox.url)
    monkeypatch.setenv("FAL_CDN_URL", sandbox.url)
    monkeypatch.setenv("FALBRIDGE_UPLOAD_THRESHOLD_BYTES", "1024")
    monkeypatch.setenv("FALBRIDGE_VAR_DIR", str(tmp_path / "var"))  # falbridge's copies of inputs
    close_storage_client()
    yield sandbox
    close_storage_client()


def big_png(path: Path, size: int = 50_000) -> Path:
    path.write_bytes(png_bytes(32, 32) + b"\x00" * (size - len(png_bytes(32, 32))))
    return path


def test_accepted_job_keeps_the_url_and_digest_not_the_bytes(fal_storage, tmp_path):
    image = big_png(tmp_path / "photo.png")
    accepted = _accept(EVF_SAM, {"prompt": "cat", "image_url": image})
    job = accepted.job
    url = job.input["image_url"]
    assert url.startswith(f"{fal_storage.url}/files/") and len(json.dumps(job.input)) < 300
    [record] = input_files_of(job)
    assert record == {
        "location": ["image_url"],
        "url": url,
        "sha256": hashlib.sha256(image.read_bytes()).hexdigest(),
        "size": 50_000,
        "content_type": "image/png",
        "storage_key": input_key(record["sha256"]),  # falbridge's copy
    }
    assert httpx.get(url).content == image.read_bytes()
    with transaction() as s:
        assert s.scalars(select(JobInput.sha256).where(JobInput.job_id == job.id)).all() == [record["sha256"]]


def test_falbridge_keeps_its_own_copy_of_an_uploaded_input_once(fal_storage, storage, tmp_path):
    image = big_png(tmp_path / "photo.png")
    digest = hashlib.sha256(image.read_bytes()).hexdigest()
    backend = open_backend(storage.url)
    first = _accept(EVF_SAM, {"prompt": "cat", "image_url": image})
    with backend.open(input_key(digest)) as kept:
        assert kept.read() == image.read_bytes()
    second = _accept(EVF_SAM, {"prompt": "dog", "image_url": image})  # the same file, another job
    assert second.job.id != first.job.id
    with backend.open(input_key(digest)) as kept:
        assert hashlib.sha256(kept.read()).hexdigest() == digest


def test_a_storage_backend_down_costs_the_copy_not_the_job(fal_storage, monkeypatch, tmp_path):
    blocked = tmp_path / "not-a-directory"
    blocked.write_bytes(b"")  # a file where the storage directory should be: nothing can be written
    monkeypatch.setenv("FALBRIDGE_STORAGE_URL", f"file://{blocked}")
    image = big_png(tmp_path / "photo.png")
    accepted = _accept(EVF_SAM, {"prompt": "cat", "image_url": image})
    assert httpx.get(accepted.job.input["image_url"]).content == image.read_bytes()
    [record] = input_files_of(accepted.job)
    assert "storage_key" not in record and record["size"] == 50_000  # the digest, no copy


def test_the_same_file_under_one_external_id_is_the_same_job(fal_storage, tmp_path):
    image = big_png(tmp_path / "a.png")
    first = _accept(EVF_SAM, {"prompt": "cat", "image_url": image}, external_id="e-1")
    again = _accept(EVF_SAM, {"prompt": "cat", "image_url": image}, external_id="e-1")
    assert (again.created, again.job.id) == (False, first.job.id)
    other = big_png(tmp_path / "b.png", 60_000)
    with pytest.raises(ExternalIdConflict):
        _accept(EVF_SAM, {"prompt": "cat", "image_url": other}, external_id="e-1")


def test_a_failed_upload_stores_no_job(fal_storage, tmp_path):
    fal_storage.set_faults(storage_auth_down=1.0)
    with pytest.raises(UploadFailed, match="503"):
        _accept(EVF_SAM, {"prompt": "cat", "image_url": big_png(tmp_path / "a.png")})
    fal_storage.set_faults(storage_auth_down=0.0, upload_refused=1.0)
    with pytest.raises(UploadFailed, match="refused"):
        _accept(EVF_SAM, {"prompt": "cat", "image_url": big_png(tmp_path / "a.png")})
    with transaction() as s:
        assert s.scalar(select(func.count()).select_from(Job)) == 0


def test_data_uri_inputs_stay_as_they_are(fal_storage):
    uri = "data:image/png;base64," + base64.b64encode(png_bytes(4, 4)).decode()
    job = _accept(EVF_SAM, {"prompt": "cat", "image_url": uri}).job
    assert job.input["image_url"] == uri and input_files_of(job) == []


def test_an_input_the_endpoint_refuses_costs_no_upload(fal_storage, tmp_path):
    fal_storage.set_faults(storage_auth_down=1.0)  # an upload attempt would raise UploadFailed
    with pytest.raises(InputValidationError, match="blur_mask"):
        _accept(EVF_SAM, {"prompt": "cat", "image_url": big_png(tmp_path / "a.png"), "blur_mask": 4})


def test_a_url_uploaded_earlier_is_described_as_a_file_handed_over(fal_storage, tmp_path):
    image = big_png(tmp_path / "photo.png")
    handed = input_files_of(_accept(EVF_SAM, {"prompt": "cat", "image_url": image}).job)[0]
    named = _accept(EVF_SAM, {"prompt": "dog", "image_url": handed["url"]}).job  # the URL, later
    assert input_files_of(named) == [handed]
    foreign = _accept(EVF_SAM, {"prompt": "dog", "image_url": "https://example.com/cat.png"}).job
    assert input_files_of(foreign) == []  # nobody uploaded it through falbridge: as given
