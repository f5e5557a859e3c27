"""Keep copies of a job's result files: fal's CDN URLs are not forever.

See docs/fal-protocol.md, "Result files and their lifetime".
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import httpx

from falbridge.worker.download.safe_get import FetchPolicy, FetchRefused, fetch_bytes

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def local_name(path: str, file_name: str | None) -> str:
    """`images[0]` + `cat.png` -> `images_0_-cat.png`; never a path separator or `..`."""
    name = _UNSAFE.sub("_", f"{path}-{file_name or 'file'}").strip("._") or "file"
    return name[:200]


class FileLike(Protocol):
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


def download_result_files(job: JobLike, dest: Path, policy: FetchPolicy | None = None) -> list[Downloaded]:
    """Each file into dest/JOB_ID/, on its own: one that fails does not stop the rest."""
    target_dir = dest / str(job.id)
    results = []
    for f in job.files:
        target = target_dir / local_name(f.path, f.file_name)
        try:
            body, _content_type = fetch_bytes(f.url, policy)
            target_dir.mkdir(parents=True, exist_ok=True)
            target.write_bytes(body)
        except (FetchRefused, httpx.HTTPError, httpx.InvalidURL, OSError) as exc:
            results.append(Downloaded(f, error=_one_line(exc)))
        else:
            results.append(Downloaded(f, saved=target))
    return results


def _one_line(exc: Exception) -> str:
    if isinstance(exc, httpx.HTTPStatusError):  # its text names the address connected to, on 3 lines
        return f"HTTP {exc.response.status_code} {exc.response.reason_phrase}".strip()
    return (str(exc).splitlines() or [""])[0][:300] or type(exc).__name__
