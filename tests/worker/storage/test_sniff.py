"""What the sniffer says a stored file is, from its first bytes (worker/storage/sniff.py),
and the head of the download the storing step hands it."""

from __future__ import annotations

import pytest

from falbridge.worker.storage.sniff import media_type, served_inline, sniff
from falbridge.worker.storage.store import Meter
from tests.worker.storage.helpers import png


def test_what_the_bytes_are():
    found = sniff(png(9, 4))
    assert (found.content_type, found.width, found.height) == ("image/png", 9, 4)
    assert sniff(b"<html><script>x</script>").content_type == "text/plain"
    assert sniff(b"\x00\x01binary").content_type == "application/octet-stream"
    assert sniff(b"").content_type == "application/octet-stream"
    assert sniff(b"\xff\xd8\xff\xe0 not really a jpeg").width is None  # its header unreadable


# Each signature where it belongs, followed by bytes no other signature starts with: one
# looked for a byte early or late finds nothing, and the file would be text or bytes.
@pytest.mark.parametrize(
    "head, kind",
    [
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 8, "image/png"),
        (b"\xff\xd8\xff\xe0 jfif", "image/jpeg"),
        (b"GIF87a header", "image/gif"),
        (b"GIF89a header", "image/gif"),
        (b"RIFF\x00\x00\x00\x00WEBPVP8 ", "image/webp"),
        (b"BM header", "image/bmp"),
        (b"II*\x00 header", "image/tiff"),
        (b"MM\x00* header", "image/tiff"),
        (b"RIFF\x00\x00\x00\x00WAVEfmt ", "audio/wav"),
        (b"ID3 tags", "audio/mpeg"),
        (b"fLaC stream", "audio/flac"),
        (b"OggS page", "audio/ogg"),
        (b"\x00\x00\x00\x1cftypavif", "image/avif"),
        (b"\x00\x00\x00\x18ftypheic", "image/heic"),
        (b"\x00\x00\x00\x18ftypisom", "video/mp4"),
        (b"\x1aE\xdf\xa3 ebml", "video/webm"),
        (b"glTF binary", "model/gltf-binary"),
        (b"%PDF-1.7", "application/pdf"),
        (b"PK\x03\x04 entries", "application/zip"),
        (b"\x1f\x8b gzip", "application/gzip"),
    ],
)
@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")  # Pillow, on the TIFF heads
def test_each_signature_is_found_at_its_offset(head, kind):
    assert sniff(head).content_type == kind


def test_utf8_is_text_unless_broken_before_its_last_character():
    assert sniff("é".encode() * 10 + "é".encode()[:1]).content_type == "text/plain"  # cut at the end
    # A four-byte character cut after its third byte starts three bytes from the end.
    assert sniff(b"a" * 20 + "😀".encode()[:3]).content_type == "text/plain"
    # A byte no character starts with, four from the end, is not a cut: not text.
    assert sniff(b"abc" * 7 + b"\xff" + b"abc").content_type == "application/octet-stream"


def test_the_storing_step_sniffs_the_first_64_kib():
    data = bytes(range(256)) * 1024  # 256 KiB
    meter = Meter()
    assert b"".join(meter.through(data[i : i + 1000] for i in range(0, len(data), 1000))) == data
    assert bytes(meter.head) == data[: 64 * 1024]  # docs/storage.md: "the first 64 KiB"


def test_only_raster_images_are_served_inline():
    assert served_inline("image/png") and served_inline("image/webp")
    for kind in ("image/svg+xml", "text/html", "text/plain", "application/pdf", "image/tiff"):
        assert not served_inline(kind)


def test_a_content_type_header_is_reduced_to_its_media_type():
    assert media_type("Image/PNG; charset=binary") == "image/png"
    assert media_type("text/html\r\nSet-Cookie: a=b") is None
    assert media_type("") is None and media_type(None) is None and media_type("png") is None
