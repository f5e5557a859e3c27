"""Local images in an input become data URIs, which fal's image models accept.

See docs/fal-protocol.md, "Inputs: URLs and data URIs".
"""

from __future__ import annotations

import base64
import mimetypes
from pathlib import Path
from typing import Any

MAX_INLINE_BYTES = 8 * 1024 * 1024  # beyond a few MB fal wants an upload, not a data URI

_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF8", "image/gif"),
    (b"RIFF", "image/webp"),
)


def sniff_content_type(data: bytes, name: str | None = None) -> str:
    for magic, content_type in _MAGIC:
        if data.startswith(magic):
            return content_type
    guessed = mimetypes.guess_type(name)[0] if name else None
    return guessed or "application/octet-stream"


def to_data_uri(data: bytes, content_type: str | None = None) -> str:
    if len(data) > MAX_INLINE_BYTES:
        raise ValueError(f"file is {len(data)} bytes; inline data URIs are limited to {MAX_INLINE_BYTES}")
    content_type = content_type or sniff_content_type(data)
    return f"data:{content_type};base64,{base64.b64encode(data).decode()}"


def path_to_data_uri(path: str | Path) -> str:
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no such file: {path}")
    data = path.read_bytes()
    return to_data_uri(data, sniff_content_type(data, path.name))


def inline_local_files(value: Any) -> Any:
    """Replace bytes and pathlib.Path values (at any depth) with data URIs.

    Plain strings are left alone: a string may be a URL or a prompt, and guessing which
    strings are paths would send someone's file by accident.
    """
    if isinstance(value, (bytes, bytearray, memoryview)):
        return to_data_uri(bytes(value))
    if isinstance(value, Path):
        return path_to_data_uri(value)
    if isinstance(value, dict):
        return {k: inline_local_files(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [inline_local_files(v) for v in value]
    return value
