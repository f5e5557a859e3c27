"""The storage backends on their own (a directory; moto's S3 server over HTTP) and the keys
they are given (what the sniffer says the bytes are: test_sniff.py)."""

from __future__ import annotations

import io
import re
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from falbridge import config
from falbridge.worker.storage import backend as backends
from falbridge.worker.storage.local import LocalBackend
from tests.plugins.storage import MotoServer, use_s3
from tests.worker.storage.helpers import png


def _chunks(data: bytes, size: int = 1000):
    return (data[i : i + size] for i in range(0, len(data), size))


def test_put_open_seek_delete(storage):
    backend = backends.configured()
    data = bytes(range(256)) * 50_000  # 12.8 MB: more than two S3 parts
    assert backend.put("jobs/x/a-1-b.bin", _chunks(data, 300_000)) == len(data)
    assert backend.exists("jobs/x/a-1-b.bin")
    with backend.open("jobs/x/a-1-b.bin") as reader:
        reader.seek(7_000_000)
        assert reader.read(5) == data[7_000_000:7_000_005]
        reader.seek(-3, io.SEEK_END)
        assert reader.read() == data[-3:]
        reader.seek(0)
        assert reader.read() == data
    backend.delete("jobs/x/a-1-b.bin")
    assert not backend.exists("jobs/x/a-1-b.bin")
    backend.delete("jobs/x/a-1-b.bin")  # again: a key already gone is no error (the purge counts on it)
    with pytest.raises(backends.StoredObjectMissing):
        backend.open("jobs/x/a-1-b.bin")


def test_a_small_and_an_empty_object(storage):
    backend = backends.configured()
    assert backend.put("jobs/x/small", [b"ab", b"", b"c"]) == 3
    assert backend.put("jobs/x/empty", []) == 0
    with backend.open("jobs/x/small") as reader:
        assert reader.read() == b"abc"
    with backend.open("jobs/x/empty") as reader:
        assert reader.read() == b""


def test_a_failing_stream_leaves_no_object(storage):
    backend = backends.configured()

    def broken():
        yield b"x" * (6 * 1024 * 1024)  # past one S3 part: a multipart upload to abort
        raise RuntimeError("the download broke")

    with pytest.raises(RuntimeError, match="the download broke"):
        backend.put("jobs/x/broken", broken())
    assert not backend.exists("jobs/x/broken")


def test_s3_down_is_storage_unavailable(monkeypatch):
    down = MotoServer().start()
    backend = backends.open_backend(use_s3(monkeypatch, down))
    down.stop()
    with pytest.raises(backends.StorageUnavailable, match="S3 s3://"):
        backend.put("jobs/x/a", [b"a"])
    with pytest.raises(backends.StorageUnavailable):
        backend.open("jobs/x/a")


def test_s3_presigned_urls_serve_the_object_with_the_headers_asked(storage):
    if storage.kind != "s3":
        assert backends.configured().presigned_url("k", 60, "attachment", "text/plain") is None
        return
    backend = backends.configured()
    backend.put("jobs/x/p.png", [png()])
    url = backend.presigned_url("jobs/x/p.png", 60, 'attachment; filename="p.png"', "image/png")
    answer = httpx.get(url)
    assert answer.content == png() and answer.headers["content-type"] == "image/png"
    assert answer.headers["content-disposition"] == 'attachment; filename="p.png"'


@pytest.mark.parametrize(
    "path, name",
    [
        ("../../etc", "../../passwd"),
        ("/abs/olute", "/etc/shadow"),
        ("..", ".."),
        ("images[0]", "a\r\nb\x00c.png"),
        ("x" * 600, "y" * 600),
        ("", None),
    ],
)
def test_keys_built_from_hostile_names_stay_under_the_jobs_prefix(tmp_path, path, name):
    job_id = uuid.uuid4()
    key = backends.object_key(job_id, path, name)
    prefix, _, last = key.rpartition("/")
    assert prefix == f"jobs/{job_id}" and ".." not in last.split("-")[0]
    assert set(last) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
    assert not last.startswith(".") and len(last) <= 2 * backends.MAX_NAME + 10
    root = LocalBackend(tmp_path / "files")
    assert root.path(key).is_relative_to(root.root)


def test_a_key_names_the_job_the_path_a_fresh_token_and_the_file():
    """docs/storage.md: names of at most 120 characters, a token of 8 hex digits, and
    inputs under the first two hex digits of their sha256."""
    job_id = uuid.uuid4()
    key = backends.object_key(job_id, "images[0]", "cat.png")
    assert re.fullmatch(rf"jobs/{job_id}/images_0-[0-9a-f]{{8}}-cat\.png", key), key
    assert backends.safe_name("x" * 200) == "x" * 120 and backends.safe_name("y" * 120) == "y" * 120
    digest = "ab" + "c" * 62
    assert backends.input_key(digest) == f"inputs/ab/{digest}"


def test_the_directory_backend_refuses_keys_that_leave_its_root(tmp_path):
    root = LocalBackend(tmp_path / "files")
    for key in ("../outside", "jobs/../../outside", "/etc/passwd", ""):
        with pytest.raises(ValueError, match="leaves the storage root"):
            root.path(key)


def test_a_delete_leaves_no_empty_directory_behind(tmp_path):
    root = LocalBackend(tmp_path / "files")
    job, digest = uuid.uuid4(), "ab" + "0" * 62
    keys = [f"jobs/{job}/image-1-a.png", f"jobs/{job}/mask-2-b.png", backends.input_key(digest)]
    for key in keys:
        root.put(key, [b"x"])
    root.delete(keys[0])
    assert root.path(keys[1]).parent.is_dir()  # the job's other file is still there
    for key in keys[1:]:
        root.delete(key)
    assert sorted(p.name for p in root.root.iterdir()) == [".incoming"]  # no jobs/, no inputs/ab/
    root.delete(keys[0])  # deleting again: nothing there, nothing to prune, no error


def test_puts_racing_deletes_in_one_directory_all_land(tmp_path):
    """A delete that empties `jobs/<id>/` removes it while another writer is about to
    rename its file into it: the writer makes it again, nothing is lost or refused."""
    root = LocalBackend(tmp_path / "files")
    prefix = f"jobs/{uuid.uuid4()}"
    start = threading.Barrier(2)

    def churn() -> None:
        start.wait()
        for i in range(300):
            root.put(f"{prefix}/churn-{i}", [b"c"])
            root.delete(f"{prefix}/churn-{i}")  # the directory empties (and goes) each time

    def keep() -> list[str]:
        start.wait()
        kept = [f"{prefix}/kept-{i}" for i in range(300)]
        for key in kept:
            root.put(key, [b"k"])
            root.delete(key)  # and put once more: the put after a prune
            root.put(key, [b"k"])
        return kept

    with ThreadPoolExecutor(2) as pool:
        churned, kept = pool.submit(churn), pool.submit(keep)
        churned.result()
        assert all(root.exists(key) for key in kept.result())
    assert not any(root.root.joinpath(prefix).glob("churn-*"))


def test_the_storage_url_decides_the_backend(tmp_path):
    assert isinstance(backends.open_backend(f"file://{tmp_path}"), LocalBackend)
    assert backends.open_backend(f"file://{tmp_path}").url == f"file://{tmp_path.resolve()}"


def test_the_configured_backend_is_one_per_process_and_url(tmp_path, monkeypatch):
    """Built once: for S3, a client and its connection pool per process, not per file."""
    monkeypatch.setenv("FALBRIDGE_STORAGE_URL", f"file://{tmp_path / 'files'}")
    config.use(None)
    try:
        assert backends.configured() is backends.configured()
    finally:
        monkeypatch.undo()
        config.use(None)
