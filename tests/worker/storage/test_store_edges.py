"""The storing step's edges, each on its own: what the meter keeps of a stream, which
failed downloads are retried, the reasons' lengths, and a run that lost the race to
record a file (its duplicate deleted, a sha256 mismatch reported)."""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

import httpx
import pytest

from falbridge.models.db import transaction
from falbridge.models.stored_files import record
from falbridge.worker.download.safe_get import FetchRefused, Unresolvable
from falbridge.worker.storage import backend as backends
from falbridge.worker.storage.local import LocalBackend
from falbridge.worker.storage.sniff import HEAD_BYTES
from falbridge.worker.storage.store import (
    Gone,
    Meter,
    StoreOutcome,
    StoreReport,
    Transient,
    _lost_race,
    download_failure,
    store_files,
)
from tests.worker.storage.helpers import completed_job


@pytest.mark.parametrize("chunk_size", [40_000, HEAD_BYTES, HEAD_BYTES + 1, 1_000_000])
def test_the_meter_keeps_exactly_the_first_64_kib_of_any_chunking(chunk_size):
    data = bytes(range(256)) * 1024  # 256 KiB, no two neighbouring KiB alike
    chunks = [data[i : i + chunk_size] for i in range(0, len(data), chunk_size)]
    meter = Meter()

    assert list(meter.through(chunks)) == chunks
    assert bytes(meter.head) == data[:HEAD_BYTES]
    assert (meter.size, meter.digest.hexdigest()) == (len(data), hashlib.sha256(data).hexdigest())


def _status_error(code: int) -> httpx.HTTPStatusError:
    request = httpx.Request("GET", "https://v3.fal.media/files/x/mask.png")
    response = httpx.Response(code, request=request)
    return httpx.HTTPStatusError(f"HTTP {code}", request=request, response=response)


@pytest.mark.parametrize("code", [408, 425, 429, 500, 503, 599])
def test_a_cdn_answer_that_may_pass_is_retried(code):
    failure = download_failure(_status_error(code))
    assert isinstance(failure, Transient) and str(failure).startswith(f"fal's CDN answered HTTP {code}")


@pytest.mark.parametrize("code", [400, 403, 404, 407, 409, 410, 424, 426, 428, 430, 499])
def test_a_cdn_answer_that_will_not_pass_is_recorded_at_once(code):
    failure = download_failure(_status_error(code))
    assert isinstance(failure, Gone) and str(failure).startswith(f"fal's CDN answered HTTP {code}")


def test_the_reason_names_the_answer_and_is_cut_to_a_bounded_length():
    assert str(download_failure(_status_error(503))) == "fal's CDN answered HTTP 503 Service Unavailable"
    assert str(download_failure(_status_error(499))) == "fal's CDN answered HTTP 499"  # no phrase: no space

    broke = download_failure(httpx.ReadError("r" * 500))
    assert isinstance(broke, Transient) and str(broke) == "download failed: ReadError: " + "r" * 200

    down = download_failure(backends.StorageUnavailable("s" * 500))
    assert isinstance(down, Transient) and str(down) == "storage backend unavailable: " + "s" * 300


def test_a_refused_url_is_gone_but_a_host_without_an_address_may_come_back():
    refused = download_failure(FetchRefused("private address 10.0.0.1"))
    assert isinstance(refused, Gone) and str(refused) == "not fetched: private address 10.0.0.1"
    unresolved = download_failure(Unresolvable("no address for cdn.example"))
    assert isinstance(unresolved, Transient) and str(unresolved) == "no address for cdn.example"


def test_the_attempt_and_the_last_attempt_are_named_never_positional(db_url):
    with pytest.raises(TypeError):  # a bare 2 or True could be taken for either
        store_files(uuid.uuid4(), 2)  # type: ignore[misc]


KEPT = "b" * 64
FILE = {"url": "https://v3.fal.media/files/x/mask.png", "content_type": "image/png", "file_name": "mask.png"}


def _recorded_by_another_run(sha256: str | None) -> uuid.UUID:
    """A completed job whose one file another run has recorded, stored with `sha256`
    (or missing when None)."""
    job_id = completed_job({"image": FILE})
    described = {"path": "image", "fal_url": FILE["url"], "file_name": "mask.png", "attempts": 1}
    if sha256 is None:
        values = {**described, "status": "missing", "reason": "fal's CDN answered HTTP 404 Not Found"}
    else:
        values = {**described, "status": "stored", "sha256": sha256, "size": 3, "storage_key": "jobs/kept"}
    with transaction() as s:
        assert record(s, job_id, values).mine
    return job_id


@pytest.mark.parametrize(
    "kept, ours, mismatch",
    [
        pytest.param(KEPT, "".join(["b"] * 64), False, id="same"),  # equal, not the same string
        pytest.param(KEPT, "a" * 64, True, id="other-sorting-before"),
        pytest.param(KEPT, "c" * 64, True, id="other-sorting-after"),
        pytest.param(None, "a" * 64, False, id="kept-missing"),  # nothing to compare with
    ],
)
def test_the_loser_of_a_race_deletes_its_copy_and_reports_other_bytes(
    db_url, monkeypatch, tmp_path, kept, ours, mismatch
):
    monkeypatch.setenv("FALBRIDGE_STORE_FILES", "none")  # no task to hand the job to
    job_id = _recorded_by_another_run(kept)
    backend = LocalBackend(tmp_path / "files")
    backend.put("jobs/ours", [b"abc"])
    report = StoreReport(StoreOutcome.DONE)

    _lost_race(backend, "jobs/ours", job_id, "image", ours, report)

    assert not backend.exists("jobs/ours")
    assert report.mismatches == (["image"] if mismatch else [])


def test_a_duplicate_the_backend_cannot_delete_is_left_and_the_mismatch_still_reported(
    db_url, monkeypatch, tmp_path: Path
):
    monkeypatch.setenv("FALBRIDGE_STORE_FILES", "none")
    job_id = _recorded_by_another_run(KEPT)
    blocker = tmp_path / "blocker"
    blocker.write_bytes(b"not a directory")  # every key's path runs through a file
    report = StoreReport(StoreOutcome.DONE)

    _lost_race(LocalBackend(blocker / "files"), "jobs/ours", job_id, "image", "a" * 64, report)

    assert report.mismatches == ["image"]
