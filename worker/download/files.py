"""Keep copies of a job's result files: fal's CDN URLs are not forever.

See docs/fal-protocol.md, "Result files and their lifetime".
"""

from __future__ import annotations

import re
from pathlib import Path

from falbridge.models.tables import Job
from falbridge.worker.download.safe_get import FetchPolicy, fetch_bytes

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def local_name(path: str, file_name: str | None) -> str:
    """`images[0]` + `cat.png` -> `images_0_-cat.png`; never a path separator or `..`."""
    name = _UNSAFE.sub("_", f"{path}-{file_name or 'file'}").strip("._") or "file"
    return name[:200]


def download_result_files(job: Job, dest: Path, policy: FetchPolicy | None = None) -> list[Path]:
    target_dir = dest / str(job.id)
    target_dir.mkdir(parents=True, exist_ok=True)
    saved = []
    for f in job.files:
        body, _content_type = fetch_bytes(f.url, policy)
        target = target_dir / local_name(f.path, f.file_name)
        target.write_bytes(body)
        saved.append(target)
    return saved
