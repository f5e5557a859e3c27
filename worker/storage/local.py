"""The local-directory backend: one file per key under the root, written to a temporary
file in the root's `.incoming/` and renamed into place (atomic on one filesystem). A
delete removes the directories it leaves empty, so purged jobs leave no `jobs/<id>/`."""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

from falbridge.worker.storage.backend import StorageUnavailable, StoredObjectMissing

INCOMING = ".incoming"
# Each retry needs a delete emptying the directory in the instant before the rename; a
# loaded machine lost 10 in a row (tests/worker/storage/test_backends.py's racing puts).
MOVE_RETRIES = 99


class LocalBackend:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()

    @property
    def url(self) -> str:
        return f"file://{self.root}"

    def path(self, key: str) -> Path:
        """The file of `key`; a key that would leave the root is refused (keys are built
        safe, this is the second line)."""
        target = (self.root / key).resolve()
        if self.root not in target.parents:  # outside, or the root itself
            raise ValueError(f"storage key {key[:80]!r} leaves the storage root")
        return target

    def put(self, key: str, chunks: Iterable[bytes]) -> int:
        target = self.path(key)
        incoming = self.root / INCOMING / secrets.token_hex(8)
        size = 0
        try:
            incoming.parent.mkdir(parents=True, exist_ok=True)
            with incoming.open("wb") as out:
                for chunk in chunks:
                    out.write(chunk)
                    size += len(chunk)
            _move_into_place(incoming, target)
        except OSError as exc:
            raise StorageUnavailable(f"cannot write {self.url}: {exc.strerror or exc}") from None
        finally:
            with contextlib.suppress(OSError):  # gone already (moved), or the root is unusable
                incoming.unlink()
        return size

    def open(self, key: str) -> BinaryIO:
        try:
            return self.path(key).open("rb")
        except FileNotFoundError:
            raise StoredObjectMissing(key) from None
        except OSError as exc:
            raise StorageUnavailable(f"cannot read {self.url}: {exc.strerror or exc}") from None

    def delete(self, key: str) -> None:
        target = self.path(key)
        try:
            target.unlink(missing_ok=True)
        except OSError as exc:
            raise StorageUnavailable(f"cannot delete in {self.url}: {exc.strerror or exc}") from None
        self._prune(target.parent)

    def _prune(self, directory: Path) -> None:
        """Remove the directories a delete left empty (`jobs/<id>/`, `inputs/<2 hex>/`), up
        to the root. rmdir only removes an empty directory, so a writer's file is never
        lost; a writer that re-creates one meanwhile is `put`'s concern."""
        while self.root in directory.parents:
            try:
                directory.rmdir()
            except OSError:  # not empty, already gone, or not ours to remove: stop here
                return
            directory = directory.parent

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def presigned_url(self, key: str, expires_s: int, disposition: str, content_type: str) -> str | None:
        return None


def _move_into_place(incoming: Path, target: Path) -> None:
    """Rename the finished file to its key; a concurrent delete may remove the (empty)
    directory between our mkdir and the rename, so make it again and retry, a bounded
    number of times."""
    for _ in range(MOVE_RETRIES):
        with contextlib.suppress(FileNotFoundError):
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(incoming, target)
            return
    reason = f"its directory was removed {MOVE_RETRIES} times before the rename"
    raise FileNotFoundError(errno.ENOENT, reason, str(target))
