"""What a stored file is, from its first bytes rather than from what it was labelled: the
content type falbridge serves it with, and an image's width and height (Pillow).

Only a handful of raster image types are ever served inline; everything else goes out
as an attachment (docs/storage.md), so a file that claims or sniffs as HTML, SVG or script
is never rendered by a browser under falbridge's origin.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

HEAD_BYTES = 64 * 1024  # enough for every signature below and most images' dimensions
INLINE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp", "image/bmp"})
OCTET_STREAM = "application/octet-stream"
_MEDIA_TYPE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]{0,62}/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}")

# (offset, signature, type): the first match wins.
_SIGNATURES: tuple[tuple[int, bytes, str], ...] = (
    (0, b"\x89PNG\r\n\x1a\n", "image/png"),
    (0, b"\xff\xd8\xff", "image/jpeg"),
    (0, b"GIF87a", "image/gif"),
    (0, b"GIF89a", "image/gif"),
    (8, b"WEBP", "image/webp"),
    (0, b"BM", "image/bmp"),
    (0, b"II*\x00", "image/tiff"),
    (0, b"MM\x00*", "image/tiff"),
    (8, b"WAVE", "audio/wav"),
    (0, b"ID3", "audio/mpeg"),
    (0, b"fLaC", "audio/flac"),
    (0, b"OggS", "audio/ogg"),
    (4, b"ftypavif", "image/avif"),
    (4, b"ftypheic", "image/heic"),
    (4, b"ftyp", "video/mp4"),
    (0, b"\x1aE\xdf\xa3", "video/webm"),
    (0, b"glTF", "model/gltf-binary"),
    (0, b"%PDF-", "application/pdf"),
    (0, b"PK\x03\x04", "application/zip"),
    (0, b"\x1f\x8b", "application/gzip"),
)


@dataclass(frozen=True)
class Sniffed:
    content_type: str
    width: int | None = None
    height: int | None = None


def media_type(header: str | None) -> str | None:
    """The media type of a Content-Type header (`image/png; charset=x` -> `image/png`),
    lowercased; None for anything that is not plainly `type/subtype`."""
    if not header:
        return None
    value = header.partition(";")[0].strip().lower()
    return value if _MEDIA_TYPE.fullmatch(value) else None


def sniff(head: bytes) -> Sniffed:
    """The content type of a file starting with `head`; an image's size when Pillow can
    read it from these bytes."""
    kind = next((t for offset, sig, t in _SIGNATURES if head[offset : offset + len(sig)] == sig), None)
    if kind is None:
        kind = "text/plain" if _is_text(head) else OCTET_STREAM
    if not kind.startswith("image/"):
        return Sniffed(kind)
    width, height = _dimensions(head)
    return Sniffed(kind, width, height)


def _dimensions(head: bytes) -> tuple[int | None, int | None]:
    try:
        with Image.open(io.BytesIO(head)) as image:  # reads the header only
            return image.width, image.height
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        return None, None


def _is_text(head: bytes) -> bool:
    if not head or b"\x00" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start >= len(head) - 3  # a character cut by the end of the head
    return True


def served_inline(content_type: str) -> bool:
    return content_type in INLINE_TYPES
