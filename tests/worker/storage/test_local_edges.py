"""The directory backend's edges (worker/storage/local.py): a write in progress, keys it
refuses, and what it says when the filesystem says no."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from falbridge.worker.storage.backend import StorageUnavailable
from falbridge.worker.storage.local import INCOMING, LocalBackend


def test_a_write_in_progress_is_one_file_with_a_random_name_in_incoming(tmp_path):
    root = LocalBackend(tmp_path / "files")
    seen: list[list[str]] = []

    def download() -> Iterator[bytes]:
        yield b"first"
        seen.append([p.name for p in (root.root / INCOMING).iterdir()])
        yield b"second"

    assert root.put("jobs/x/a", download()) == len(b"firstsecond")
    [[name]] = seen
    assert re.fullmatch(r"[0-9a-f]{16}", name)  # 8 random bytes: two writers never share one
    assert list((root.root / INCOMING).iterdir()) == []
    assert root.path("jobs/x/a").read_bytes() == b"firstsecond"


def test_a_refused_key_is_quoted_in_80_characters(tmp_path):
    root = LocalBackend(tmp_path / "files")
    key = "../" + "".join(f"{i:03d}" for i in range(100))  # no two places alike
    with pytest.raises(ValueError) as raised:
        root.path(key)
    assert str(raised.value) == f"storage key {key[:80]!r} leaves the storage root"


def test_a_directory_where_a_file_should_be_is_unavailable_not_missing(tmp_path):
    """Reading or deleting a key that names a directory fails as the filesystem does, with
    its reason and no path (the URL names the root)."""
    root = LocalBackend(tmp_path / "files")
    root.put("jobs/x/a", [b"a"])
    with pytest.raises(StorageUnavailable) as read:
        root.open("jobs/x")
    assert str(read.value) == f"cannot read {root.url}: Is a directory"
    with pytest.raises(StorageUnavailable) as deleted:
        root.delete("jobs/x")
    assert str(deleted.value) == f"cannot delete in {root.url}: Is a directory"
    assert root.exists("jobs/x/a")


def test_a_root_that_is_a_file_refuses_writes_with_the_filesystems_reason(tmp_path):
    """The reason is the filesystem's own words, without the path (the URL names the root)."""
    (tmp_path / "files").write_bytes(b"not a directory")
    root = LocalBackend(tmp_path / "files")
    with pytest.raises(StorageUnavailable) as raised:
        root.put("jobs/x/a", [b"a"])
    assert str(raised.value) == f"cannot write {root.url}: Not a directory"


def test_a_put_makes_every_missing_directory_of_its_key_and_reuses_existing_ones(tmp_path):
    root = LocalBackend(tmp_path / "files")
    root.put("jobs/x/deep/er/a", [b"a"])  # nothing under the root yet
    root.put("jobs/x/deep/er/b", [b"b"])  # the same directory, now there
    assert sorted(p.name for p in root.path("jobs/x/deep/er/a").parent.iterdir()) == ["a", "b"]
