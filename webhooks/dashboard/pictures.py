"""What the job page draws: the input image (falbridge's stored copy, else the URL as given),
EVF-SAM's mask or masked image over or beside it, Florence-2's boxes on it, and the image
hosts the page's Content-Security-Policy must allow for these.

Boxes stay in the image's pixel coordinates here; the page script places them as
percentages of the image's natural size, so they scale with the rendered image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, TypeGuard
from urllib.parse import urlsplit

from flask import url_for

from falbridge.models.jobs import input_files_of
from falbridge.models.serialize import files_dicts
from falbridge.models.tables import Job

EVF_SAM = "fal-ai/evf-sam"
FLORENCE_REGION_PROPOSAL = "fal-ai/florence-2-large/region-proposal"
MAX_BOXES = 500  # a result is fal's; a page of a million divs helps nobody
_SHOWN_DATA_URI = "data:image/"


@dataclass(frozen=True)
class Picture:
    url: str
    width: int | None = None
    height: int | None = None


@dataclass(frozen=True)
class Box:
    x: float
    y: float
    w: float
    h: float
    label: str


@dataclass
class Pictures:
    input: Picture | None = None
    mask: Picture | None = None  # mask_only (the default): drawn over the input
    masked: Picture | None = None  # mask_only=false: fal's masked image, shown beside it
    boxes: list[Box] = field(default_factory=list)

    def image_sources(self) -> list[str]:
        """CSP sources for the images shown that are not this origin's own paths."""
        shown = [p.url for p in (self.input, self.mask, self.masked) if p is not None]
        return sorted({source for url in shown if not url.startswith("/") and (source := _source(url))})


def pictures(job: Job) -> Pictures:
    """Needs the job's files, stored files and events loaded (get_job(..., full=True))."""
    found = Pictures(input=_input_picture(job))
    result = job.result if isinstance(job.result, dict) else {}
    if job.endpoint_id == EVF_SAM:
        picture = _result_picture(job, "image")
        if job.input.get("mask_only") is False:
            found.masked = picture
        else:
            found.mask = picture
    elif job.endpoint_id == FLORENCE_REGION_PROPOSAL:
        results = result.get("results")
        bboxes = results.get("bboxes") if isinstance(results, dict) else None
        found.boxes = _boxes(bboxes if isinstance(bboxes, list) else [])
    return found


def _input_picture(job: Job) -> Picture | None:
    given = job.input.get("image_url") if isinstance(job.input, dict) else None
    if not isinstance(given, str):
        return None
    for uploaded in input_files_of(job):
        if uploaded.get("location") == ["image_url"] and isinstance(uploaded.get("sha256"), str):
            return Picture(url_for("job_files.input_copy", job_id=str(job.id), sha256=uploaded["sha256"]))
    return Picture(given) if _showable(given) else None


def _result_picture(job: Job, path: str) -> Picture | None:
    for described in files_dicts(job):
        if described["path"] != path:
            continue
        url = described["download_url"] or described["url"]
        if url and (described["download_url"] or _showable(url)):
            return Picture(url, described["width"], described["height"])
    return None


def _boxes(bboxes: list[Any]) -> list[Box]:
    found = []
    for item in bboxes[:MAX_BOXES]:
        if not isinstance(item, dict):
            continue
        numbers = [float(n) for n in (item.get(name) for name in ("x", "y", "w", "h")) if _finite(n)]
        if len(numbers) == 4:
            x, y, w, h = numbers
            found.append(Box(x, y, w, h, str(item.get("label") or "")))
    return found


def _finite(value: object) -> TypeGuard[int | float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _showable(url: str) -> bool:
    """Only http(s) images and image data URIs go into an <img>: never javascript: and the like."""
    return _source(url) is not None


def _source(url: str) -> str | None:
    """The CSP source allowing `url`: scheme, host and port only (a source can hold no
    quotes, spaces or semicolons); None for anything else."""
    if url.startswith(_SHOWN_DATA_URI):
        return "data:"
    try:
        parts = urlsplit(url)
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return None
    host = parts.hostname or ""
    if (
        parts.scheme not in ("http", "https")
        or not host
        or not all(ch.isalnum() or ch in ".-:" for ch in host)
    ):
        return None
    return f"{parts.scheme}://{f'[{host}]' if ':' in host else host}{port}"
