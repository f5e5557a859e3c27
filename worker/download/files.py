"""Keep copies of a job's result files: fal's CDN URLs are not forever.

A file falbridge has stored (docs/storage.md) is read from falbridge's copy, its sha256
checked against the recorded one as it is written (a mismatch is reported and the file not
kept); any other file comes from fal's URL. See docs/fal-protocol.md, "Result files and
their lifetime".
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import httpx

from falbridge.worker.download.safe_get import FetchPolicy, FetchRefused, fetch_stream

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def local_name(path: str, file_name: str | None) -> str:
    """`images[0]` + `cat.png` -> `images_0_-cat.png`; never a path separator or `..`."""
    name = _UNSAFE.sub("_", f"{path}-{file_name or 'file'}").strip("._") or "file"
    return name[:200]


class FileLike(Protocol):
    """A result file; one as the API shows it (falbridge.ResultFile) also says whether
    falbridge stored it (`status`, `sha256`), read with getattr: a stored row has no such."""

    @property
    def path(self) -> str: ...

    @property
    def url(self) -> str: ...

    @property
    def file_name(self) -> str | None: ...


class JobLike(Protocol):
    """A job as stored (falbridge.models.tables.Job) or as the Python API returns it."""

    @property
    def id(self) -> object: ...

    @property
    def files(self) -> Sequence[FileLike]: ...


@dataclass(frozen=True)
class Downloaded:
    """One result file: where it was `saved`, or the `error` (one line) that stopped it."""

    file: FileLike
    saved: Path | None = None
    error: str | None = None


# The stored copy of (job id, file id), chunk by chunk.
OpenStored = Callable[[str, int], AbstractContextManager[Iterable[bytes]]]


class IntegrityError(ValueError):
    """The bytes read do not have the sha256 recorded when the file was stored."""


def download_result_files(
    job: JobLike, dest: Path, policy: FetchPolicy | None = None, open_stored: OpenStored | None = None
) -> list[Downloaded]:
    """Each file into dest/JOB_ID/, on its own: one that fails does not stop the rest.
    `open_stored`: where falbridge's copies are read, for the files it stored."""
    target_dir = dest / str(job.id)
    results = []
    for f in job.files:
        target = target_dir / local_name(f.path, f.file_name)
        try:
            target_dir.mkdir(parents=True, exist_ok=True)
            sha256 = getattr(f, "sha256", None) if getattr(f, "status", None) == "stored" else None
            file_id = getattr(f, "id", None)
            if open_stored is not None and sha256 and isinstance(file_id, int):
                with open_stored(str(job.id), file_id) as chunks:
                    _write_checked(target, chunks, sha256)
            else:
                with fetch_stream(f.url, policy) as fetched:
                    _write_checked(target, fetched.chunks(), None)
        except (FetchRefused, IntegrityError, httpx.HTTPError, httpx.InvalidURL, OSError, LookupError) as exc:
            results.append(Downloaded(f, error=_one_line(exc)))
        else:
            results.append(Downloaded(f, saved=target))
    return results


def _write_checked(target: Path, chunks: Iterable[bytes], sha256: str | None) -> None:
    """Stream into `target`; with `sha256`, the file is kept only if its bytes have it."""
    digest = hashlib.sha256()
    try:
        with target.open("wb") as out:
            for chunk in chunks:
                digest.update(chunk)
                out.write(chunk)
        if sha256 is not None and digest.hexdigest() != sha256:
            got = digest.hexdigest()
            raise IntegrityError(f"sha256 mismatch: the stored copy reads {got}, recorded {sha256}")
    except BaseException:
        target.unlink(missing_ok=True)
        raise


def _one_line(exc: Exception) -> str:
    if isinstance(exc, httpx.HTTPStatusError):  # its text names the address connected to, on 3 lines
        return f"HTTP {exc.response.status_code} {exc.response.reason_phrase}".strip()
    return (str(exc).splitlines() or [""])[0][:300] or type(exc).__name__
