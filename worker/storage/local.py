"""The local-directory backend: one file per key under the root, written to a temporary
file in the root's `.incoming/` and renamed into place (atomic on one filesystem)."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

from falbridge.worker.storage.backend import StorageUnavailable, StoredObjectMissing

INCOMING = ".incoming"


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
        if not target.is_relative_to(self.root) or target == self.root:
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
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(incoming, target)
        except OSError as exc:
            raise StorageUnavailable(f"cannot write {self.url}: {exc.strerror or exc}") from None
        finally:
            with contextlib.suppress(OSError):  # gone already, or the root is unusable
                incoming.unlink(missing_ok=True)
        return size

    def open(self, key: str) -> BinaryIO:
        try:
            return self.path(key).open("rb")
        except FileNotFoundError:
            raise StoredObjectMissing(key) from None
        except OSError as exc:
            raise StorageUnavailable(f"cannot read {self.url}: {exc.strerror or exc}") from None

    def delete(self, key: str) -> None:
        try:
            self.path(key).unlink(missing_ok=True)
        except OSError as exc:
            raise StorageUnavailable(f"cannot delete in {self.url}: {exc.strerror or exc}") from None

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def presigned_url(self, key: str, expires_s: int, disposition: str, content_type: str) -> str | None:
        return None
