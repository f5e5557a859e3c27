"""Shared helpers for the fal client tests; their `queue_client` fixture is in tests/plugins/fal.py."""

from __future__ import annotations

import base64
import struct
import zlib

import httpx

from falbridge.worker.fal import QueueClient
from tests.plugins.sandbox import TEST_FAL_KEY

PASS_THROUGH = "fal-ai/flux/dev"


def png_data_uri(width: int = 8, height: int = 6) -> str:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + b"\x80" * width for _ in range(height))  # filter byte + grey pixels
    png = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )
    return "data:image/png;base64," + base64.b64encode(png).decode()


IMAGE = png_data_uri()
EVF_INPUT = {"prompt": "the grey square", "image_url": IMAGE}


def short_read_timeout_client(sandbox, read_s: float = 0.2) -> QueueClient:
    return QueueClient(sandbox.url, TEST_FAL_KEY, timeout=httpx.Timeout(5.0, read=read_s))


def only_request(sandbox) -> dict:
    truth = sandbox.ground_truth()
    assert len(truth["requests"]) == 1, truth
    return truth["requests"][0]
