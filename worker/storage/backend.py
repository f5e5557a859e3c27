"""The storage backend: a small protocol (put a stream, open it for reading, delete, ask
whether it is there, and for S3 a presigned URL) and the one variable that chooses it,
FALBRIDGE_STORAGE_URL: `file:///dir` (the default: `files/` under the var dir) or
`s3://bucket/prefix`.

Keys are per job: `jobs/<job id>/<path>-<token>-<file name>` (docs/storage.md), built here
from a UUID, a random token and names reduced to `[A-Za-z0-9._-]`: nothing in a key comes
from fal or a user unfiltered, so no key can climb out of the directory or the prefix.
"""

from __future__ import annotations

import functools
import re
import secrets
import uuid
from collections.abc import Iterable
from typing import BinaryIO, Protocol

from falbridge import config

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
MAX_NAME = 120


class StorageUnavailable(OSError):
    """The backend could not be reached or refused the operation: worth retrying later."""


class StoredObjectMissing(LookupError):
    """No object under this key (deleted behind falbridge's back)."""


class Backend(Protocol):
    """Where stored files live. Every method raises StorageUnavailable for failures that may
    pass, StoredObjectMissing for a key that is not there (to delete, none: it is done)."""

    @property
    def url(self) -> str: ...

    def put(self, key: str, chunks: Iterable[bytes]) -> int:
        """Write the chunks under `key` as they come (a reader never sees a partial object);
        returns the byte count."""
        ...

    def open(self, key: str) -> BinaryIO:
        """A seekable binary reader of the object (a byte range costs only its bytes)."""
        ...

    def delete(self, key: str) -> None: ...

    def exists(self, key: str) -> bool: ...

    def presigned_url(self, key: str, expires_s: int, disposition: str, content_type: str) -> str | None:
        """A short-lived URL that serves the object directly; None where there is none."""
        ...


def safe_name(text: str | None, fallback: str = "file") -> str:
    """`images[0]` -> `images_0`; never a path separator, `..` or a leading dot."""
    name = _UNSAFE.sub("_", text or "").strip("._") or fallback
    return name[:MAX_NAME]


def object_key(job_id: uuid.UUID, path: str, file_name: str | None) -> str:
    """A fresh key for one attempt at storing this file: the random token keeps two
    attempts (two workers, a retry) from ever writing the same object."""
    return f"jobs/{job_id}/{safe_name(path, 'root')}-{secrets.token_hex(4)}-{safe_name(file_name)}"


def input_key(sha256: str) -> str:
    """Input files are kept by content: a file handed over twice is one object, found from
    the digest a job records for each uploaded input."""
    return f"inputs/{sha256[:2]}/{sha256}"


def job_prefix(job_id: uuid.UUID) -> str:
    return f"jobs/{job_id}/"


def open_backend(url: str) -> Backend:
    if url.startswith("s3://"):
        from falbridge.worker.storage.s3 import S3Backend  # boto3: the `s3` extra

        bucket, _, prefix = url[len("s3://") :].partition("/")
        return S3Backend(bucket, prefix)
    from falbridge.worker.storage.local import LocalBackend

    return LocalBackend(url[len("file://") :])


def configured() -> Backend:
    """The backend FALBRIDGE_STORAGE_URL names (one per process and URL)."""
    cfg = config.current()
    return _cached(cfg.storage.resolved_url(cfg.database.resolved_var_dir()))


@functools.cache
def _cached(url: str) -> Backend:
    return open_backend(url)
