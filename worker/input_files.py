"""Local files in an input (`Path`, `bytes`, an open binary file) become what fal's models
read: a URL in fal storage above the upload threshold, a data URI below it.

Uploads happen before the job is stored, so a failed upload stores nothing. The job keeps
each uploaded file's URL in its input and `InputFile` records (where, URL, sha256, size) in
its creation event; the bytes never enter the job row. Data URIs already in an input (and
in jobs stored before uploads existed) are left as they are.

See docs/fal-protocol.md, "Inputs: URLs and data URIs" and "Upload API".
"""

from __future__ import annotations

import base64
import io
import mimetypes
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from falbridge.worker.fal.upload import Uploaded

MAX_INLINE_BYTES = 8 * 1024 * 1024  # beyond a few MB fal wants an upload, not a data URI
_SNIFF_BYTES = 16

PENDING_UPLOAD_URL = "https://upload.invalid/pending"
_UNSAFE_NAME_CHARS = re.compile(r"[^A-Za-z0-9._-]+")

_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF8", "image/gif"),
    (b"RIFF", "image/webp"),
)

# (stream at the file's start, size, content type, file name) -> where fal can read it.
Uploader = Callable[[BinaryIO, int, str, str], Uploaded]
Location = tuple[str | int, ...]


@dataclass(frozen=True)
class InputFile:
    """One file of an input that went to fal storage."""

    location: Location  # keys and indexes down to the value, e.g. ("image_url",)
    url: str
    sha256: str
    size: int
    content_type: str
    storage_key: str | None = None  # falbridge's copy, when one was kept

    def as_json(self) -> dict[str, Any]:
        described = {
            "location": list(self.location),
            "url": self.url,
            "sha256": self.sha256,
            "size": self.size,
            "content_type": self.content_type,
        }
        return described | ({"storage_key": self.storage_key} if self.storage_key else {})


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
    """Every local file as a data URI, whatever its size (up to MAX_INLINE_BYTES)."""
    return prepare_input_files(value, None, threshold=MAX_INLINE_BYTES)[0]


def is_local_file(value: Any) -> bool:
    return isinstance(value, (bytes, bytearray, memoryview, Path, io.BufferedIOBase, io.RawIOBase))


def prepare_input_files(
    value: Any, upload: Uploader | None, *, threshold: int
) -> tuple[Any, list[InputFile]]:
    """`value` with its local files (at any depth) replaced, and the files uploaded.

    Plain strings are left alone: a string may be a URL or a prompt, and guessing which
    strings are paths would send someone's file by accident. Without `upload`, a file
    above the threshold is refused (ValueError).
    """
    uploaded: list[InputFile] = []

    def walk(item: Any, location: Location) -> Any:
        if is_local_file(item):
            return _prepared(item, location, upload, threshold, uploaded)
        if isinstance(item, dict):
            return {k: walk(v, (*location, k)) for k, v in item.items()}
        if isinstance(item, (list, tuple)):
            return [walk(v, (*location, i)) for i, v in enumerate(item)]
        return item

    return walk(value, ()), uploaded


def _prepared(
    item: Any, location: Location, upload: Uploader | None, threshold: int, uploaded: list[InputFile]
) -> str:
    with _opened(item) as (stream, size, name):
        if size <= threshold:
            content_type = _sniffed(stream, name)
            return to_data_uri(stream.read(size), content_type)
        if upload is None:
            raise ValueError(f"file is {size} bytes; files above {threshold} bytes need an upload")
        done = upload_stream(stream, size, name, upload)
        uploaded.append(InputFile(location, done.url, done.sha256, done.size, done.content_type))
        return done.url


def upload_stream(stream: BinaryIO, size: int, name: str | None, upload: Uploader) -> Uploaded:
    """Upload `size` bytes from the stream's position (the stream is left there again).
    falbridge.worker.input_copies.keeping wraps an uploader that also keeps the copy."""
    content_type = _sniffed(stream, name)
    start = stream.tell()
    done = upload(stream, size, content_type, _safe_name(name) or _default_name(content_type))
    stream.seek(start)
    return done


def _sniffed(stream: BinaryIO, name: str | None) -> str:
    head = stream.read(_SNIFF_BYTES)
    stream.seek(-len(head), os.SEEK_CUR)
    return sniff_content_type(head, name)


def with_files_pending(value: Any) -> Any:
    """`value` with each local file as a stand-in URL: the input checked before any upload,
    so an input the endpoint refuses costs no upload."""
    if is_local_file(value):
        return PENDING_UPLOAD_URL
    if isinstance(value, dict):
        return {k: with_files_pending(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [with_files_pending(v) for v in value]
    return value


class _opened:
    """(seekable binary stream, size in bytes from its position, file name or None)."""

    def __init__(self, item: Any) -> None:
        self._item = item
        self._owned: BinaryIO | None = None

    def __enter__(self) -> tuple[BinaryIO, int, str | None]:
        item = self._item
        if isinstance(item, (bytes, bytearray, memoryview)):
            return io.BytesIO(bytes(item)), len(item), None
        if isinstance(item, Path):
            if not item.is_file():
                raise ValueError(f"no such file: {item}")
            self._owned = item.open("rb")
            return self._owned, item.stat().st_size, item.name
        stream: BinaryIO = item
        if not stream.seekable():
            stream = io.BytesIO(stream.read())  # a pipe: held in memory, as bytes would be
        start = stream.tell()
        size = stream.seek(0, os.SEEK_END) - start
        stream.seek(start)
        name = getattr(item, "name", None)
        return stream, size, os.path.basename(name) if isinstance(name, str) else None

    def __exit__(self, *exc_info: object) -> None:
        if self._owned is not None:
            self._owned.close()


def _safe_name(name: str | None) -> str:
    # It travels in a header (X-Fal-File-Name) and ends up in a URL path.
    return _UNSAFE_NAME_CHARS.sub("_", os.path.basename(name or "")).strip("._")[:120]


def _default_name(content_type: str) -> str:
    return "upload" + (mimetypes.guess_extension(content_type) or ".bin")


def with_digests(value: Any, files: list[dict[str, Any]]) -> Any:
    """`value` with each uploaded file's URL replaced by its digest, so that the same request
    sent twice (two uploads, two URLs) compares equal."""
    for record in files:
        value = _replaced(value, list(record.get("location") or []), f"sha256:{record.get('sha256')}")
    return value


def _replaced(value: Any, location: list[Any], new: str) -> Any:
    if not location:
        return new
    head, rest = location[0], location[1:]
    if isinstance(value, dict) and head in value:
        return {**value, head: _replaced(value[head], rest, new)}
    if isinstance(value, list) and isinstance(head, int) and 0 <= head < len(value):
        return [_replaced(v, rest, new) if i == head else v for i, v in enumerate(value)]
    return value
