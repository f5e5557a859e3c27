"""Input images (download, size sniffing) and cheap synthetic PNG outputs, stdlib only."""

from __future__ import annotations

import base64
import binascii
import functools
import math
import struct
import urllib.parse
import zlib

import httpx

MAX_DOWNLOAD_BYTES = 32 * 1024 * 1024
MAX_PIXELS = 40_000_000  # keeps a synthetic mask's raw rows well under 50 MB
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# SOF0..SOF15 carry the frame size; C4 (DHT), C8 (JPG) and CC (DAC) share the range.
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


class ImageInputError(Exception):
    """An input image problem, reported the way fal models report it (a 422 detail)."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message


def load_image_size(url: object, client: httpx.Client, timeout: float) -> tuple[int, int]:
    return checked_size(_download(url, client, timeout))


def checked_size(data: bytes) -> tuple[int, int]:
    size = image_size(data)
    if size is None:
        raise ImageInputError("image_load_error", "Image could not be loaded: not a PNG or JPEG")
    width, height = size
    if width * height > MAX_PIXELS:
        raise ImageInputError("image_load_error", f"Image is too large ({width}x{height})")
    return size


def _download(url: object, client: httpx.Client, timeout: float) -> bytes:
    if not isinstance(url, str):
        raise _download_error("not a URL")
    if url.startswith("data:"):
        return _decode_data_uri(url)
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise _download_error("unsupported URL scheme")
    try:
        with client.stream("GET", url, timeout=timeout) as response:
            if response.status_code // 100 != 2:
                raise _download_error(f"HTTP {response.status_code}")
            chunks, size = [], 0
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > MAX_DOWNLOAD_BYTES:
                    raise _download_error("file too large")
                chunks.append(chunk)
            return b"".join(chunks)
    except httpx.HTTPError as exc:
        raise _download_error(type(exc).__name__) from exc


def _download_error(reason: str) -> ImageInputError:
    return ImageInputError("file_download_error", f"The file could not be downloaded ({reason}).")


def _decode_data_uri(url: str) -> bytes:
    header, comma, payload = url[5:].partition(",")
    if not comma:
        raise _download_error("malformed data URI")
    if not header.endswith(";base64"):
        return urllib.parse.unquote_to_bytes(payload)
    compact = "".join(urllib.parse.unquote(payload).split())
    # Accept the URL-safe alphabet and missing padding too; reject anything else.
    standard = compact.replace("-", "+").replace("_", "/")
    try:
        return base64.b64decode(standard + "=" * (-len(standard) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise _download_error("invalid base64 in data URI") from None


def image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG IHDR or a JPEG SOF segment; None for anything else."""
    if data.startswith(_PNG_SIGNATURE) and data[12:16] == b"IHDR" and len(data) >= 24:
        width, height = struct.unpack(">II", data[16:24])
    elif data.startswith(b"\xff\xd8"):
        width, height = _jpeg_size(data) or (0, 0)
    else:
        return None
    return (width, height) if width > 0 and height > 0 else None


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte before a marker
            i += 1
            continue
        if marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:  # markers without a length
            i += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image / start of scan: no frame header seen
            return None
        length = int.from_bytes(data[i + 2 : i + 4], "big")
        if marker in _JPEG_SOF:
            if i + 9 > len(data):
                return None
            height = int.from_bytes(data[i + 5 : i + 7], "big")
            width = int.from_bytes(data[i + 7 : i + 9], "big")
            return width, height
        i += 2 + length
    return None


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def grayscale_png(width: int, height: int, rows: list[bytes]) -> bytes:
    """8-bit grayscale PNG; each row gets filter type 0 (none)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    raw = b"".join(b"\x00" + row for row in rows)
    return (
        _PNG_SIGNATURE
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(raw, 6))
        + _chunk(b"IEND", b"")
    )


@functools.lru_cache(maxsize=32)
def ellipse_mask_png(width: int, height: int, invert: bool = False, grow: int = 0) -> bytes:
    """White filled ellipse (half the image size, grown by `grow` px) on black."""
    inside, outside = (b"\x00", b"\xff") if invert else (b"\xff", b"\x00")
    cx, cy = width / 2, height / 2
    rx, ry = width / 4 + grow, height / 4 + grow
    rows = []
    for y in range(height):
        dy = (y + 0.5 - cy) / ry
        if abs(dy) >= 1:
            rows.append(outside * width)
            continue
        half = rx * math.sqrt(1 - dy * dy)
        left, right = max(0, round(cx - half)), min(width, round(cx + half))
        rows.append(outside * left + inside * (right - left) + outside * (width - right))
    return grayscale_png(width, height, rows)


@functools.lru_cache(maxsize=32)
def flat_png(width: int, height: int, level: int = 128) -> bytes:
    row = bytes([level]) * width
    return grayscale_png(width, height, [row] * height)
