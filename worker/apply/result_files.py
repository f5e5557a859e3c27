"""Find fal File objects anywhere in a model output."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

_FILE_HINTS = ("content_type", "file_name", "file_size")


def is_file_object(value: Any) -> bool:
    # fal's File: `url` plus at least one of its descriptive fields (an Image adds
    # width/height). A bare {"url": ...} is too common in outputs to claim it is a file.
    return (
        isinstance(value, dict) and isinstance(value.get("url"), str) and any(k in value for k in _FILE_HINTS)
    )


def find_files(output: Any, path: str = "") -> Iterator[dict[str, Any]]:
    """Yield one row per File object, with `path` saying where it was (`image`, `images[2]`)."""
    if is_file_object(output):
        yield {
            "path": path or "$",
            "url": output["url"],
            "content_type": _str(output.get("content_type")),
            "file_name": _str(output.get("file_name")),
            "file_size": _int(output.get("file_size")),
            "width": _int(output.get("width")),
            "height": _int(output.get("height")),
        }
        return
    if isinstance(output, dict):
        for key, value in output.items():
            yield from find_files(value, f"{path}.{key}" if path else str(key))
    elif isinstance(output, list):
        for index, value in enumerate(output):
            yield from find_files(value, f"{path}[{index}]")


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None
