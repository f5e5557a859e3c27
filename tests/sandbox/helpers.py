"""Test-side helpers: build and read images without the sandbox's code, submit, poll."""

from __future__ import annotations

import base64
import socket
import struct
import urllib.parse
import zlib
from typing import Any

import httpx

from tests.plugins.waiting import poll_until

ECHO = "acme/echo-model"
EVF_SAM = "fal-ai/evf-sam"
FLORENCE = "fal-ai/florence-2-large/region-proposal"


def png_bytes(width: int, height: int, shade: int = 90) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    raw = (b"\x00" + bytes([shade]) * width) * height
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    )


def jpeg_header(width: int, height: int) -> bytes:
    """SOI, a JFIF APP0, a DQT-like filler segment, then SOF0 carrying the frame size."""
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    filler = b"\xff\xdb" + struct.pack(">H", 5) + b"\x00\x01\x02"
    sof0 = b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, height, width, 1) + b"\x01\x11\x00"
    return b"\xff\xd8" + app0 + filler + sof0 + b"\xff\xd9"


def data_uri(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def read_png(data: bytes) -> tuple[int, int, list[bytes]]:
    """(width, height, rows) of an 8-bit grayscale PNG whose rows all use filter 0."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert crc == zlib.crc32(kind + body), f"bad CRC in {kind!r}"
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    width, height, depth, color = struct.unpack(">IIBB", header[:10])
    assert (depth, color) == (8, 0), "expected 8-bit grayscale"
    raw = zlib.decompress(idat)
    stride = width + 1
    rows = [raw[i * stride : (i + 1) * stride] for i in range(height)]
    assert all(row[0] == 0 for row in rows), "expected filter type 0"
    return width, height, [row[1:] for row in rows]


def closed_port_url(path: str = "/hook") -> str:
    """A loopback URL nobody listens on (connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}{path}"


def submit(
    client: httpx.Client,
    base_url: str,
    endpoint: str,
    payload: Any,
    webhook: str | None = None,
    headers: dict[str, str] | None = None,
    params: dict[str, str] | None = None,
) -> httpx.Response:
    query = dict(params or {})
    if webhook is not None:
        query["fal_webhook"] = webhook
    url = f"{base_url}/{endpoint}"
    if query:
        url += "?" + urllib.parse.urlencode(query)
    return client.post(url, json=payload, headers=headers)


def status_of(client: httpx.Client, submitted: dict[str, Any]) -> dict[str, Any]:
    return client.get(submitted["status_url"]).json()


def wait_status(client: httpx.Client, submitted: dict[str, Any], status: str, timeout: float = 5.0) -> dict:
    return poll_until(
        lambda: status_of(client, submitted), lambda body: body.get("status") == status, timeout
    )
