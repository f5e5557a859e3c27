"""The edges of falbridge.worker.input_files: the inline limit and the upload threshold
exactly at and one past their values, streams not at their start and streams that cannot
seek, the names uploads travel under, and digests put back into lists by index."""

from __future__ import annotations

import dataclasses
import io
import os

import pytest

from falbridge.worker.fal.upload import StorageClient
from falbridge.worker.input_files import (
    InputFile,
    prepare_input_files,
    sniff_content_type,
    to_data_uri,
    with_digests,
)
from tests.plugins.sandbox import TEST_FAL_KEY

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16
FAL_INLINE_LIMIT = 8 * 1024 * 1024  # written out: the constant itself is what is under test


def test_a_data_uri_takes_exactly_the_inline_limit_and_not_a_byte_more():
    at_limit = to_data_uri(bytes(FAL_INLINE_LIMIT))
    assert at_limit.startswith("data:application/octet-stream;base64,")
    with pytest.raises(ValueError, match=f"limited to {FAL_INLINE_LIMIT}$"):
        to_data_uri(bytes(FAL_INLINE_LIMIT + 1))


def test_a_file_exactly_at_the_threshold_is_inlined():
    out, files = prepare_input_files({"mask": PNG}, None, threshold=len(PNG))
    assert out["mask"].startswith("data:image/png;base64,") and files == []


def test_the_threshold_is_named_never_positional():
    with pytest.raises(TypeError):
        prepare_input_files({"mask": PNG}, None, len(PNG))  # type: ignore[misc]


def test_a_name_gives_the_type_when_the_bytes_do_not():
    assert sniff_content_type(b"just words", "notes.txt") == "text/plain"
    assert sniff_content_type(b"just words", "notes.tar.gz") == "application/x-tar"  # not the encoding


def test_a_stream_counts_from_where_it_stands():
    stream = io.BytesIO(b"skip" * 2 + PNG)
    stream.seek(8)
    out, _ = prepare_input_files({"mask": stream}, None, threshold=len(PNG))  # one byte more would not fit
    assert out["mask"] == to_data_uri(PNG)


def test_a_stream_that_cannot_seek_is_read_whole():
    read_end, write_end = os.pipe()
    os.write(write_end, PNG)
    os.close(write_end)
    with open(read_end, "rb") as pipe:
        assert not pipe.seekable()
        out, _ = prepare_input_files({"mask": pipe}, None, threshold=1024)
    assert out["mask"] == to_data_uri(PNG)


def test_an_uploaded_file_record_cannot_be_altered():
    record = InputFile(("image_url",), "https://v3.fal.media/files/a.png", "ab" * 32, 3, "image/png")
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.url = "https://elsewhere.example/a.png"  # type: ignore[misc]
    assert len({record, dataclasses.replace(record)}) == 1


@pytest.fixture
def named_uploads(sandbox):
    """An uploader to the sandbox's storage that also notes the name each file went under."""
    names: list[str] = []
    with StorageClient(sandbox.url, sandbox.url, TEST_FAL_KEY) as client:

        def upload(stream, size, content_type, name):
            names.append(name)
            return client.upload(stream, size, content_type, name)

        yield upload, names


def test_an_upload_name_is_cut_at_120_characters(named_uploads, tmp_path):
    upload, names = named_uploads
    stem = "n" * 116
    for extra in ("", "x"):  # 120 characters with ".png", then 121
        path = tmp_path / f"{stem}{extra}.png"
        path.write_bytes(PNG)
        prepare_input_files({"image_url": path}, upload, threshold=4)
    assert names == [f"{stem}.png", f"{stem}x.pn"]


def test_bytes_without_a_name_upload_under_one_made_from_their_type(named_uploads):
    upload, names = named_uploads
    out, _ = prepare_input_files({"a": PNG, "b": b"no magic here"}, upload, threshold=4)
    assert names == ["upload.png", "upload.bin"]
    assert out["a"].endswith("/upload.png")


LONG = [f"https://e.example/{i}.png" for i in range(300)]


@pytest.mark.parametrize(
    ("value", "index", "expected"),
    [
        (["https://e/a", "https://e/b"], 0, ["sha256:d", "https://e/b"]),
        (["https://e/a", "https://e/b"], 1, ["https://e/a", "sha256:d"]),
        (LONG, 299, [*LONG[:299], "sha256:d"]),  # past the small ints CPython shares
        (["https://e/a"], 1, ["https://e/a"]),  # one past the end: a record that no longer fits
        (["https://e/a"], -1, ["https://e/a"]),
        ("https://e/a", 0, "https://e/a"),  # a string is not a list to index
    ],
    ids=["first", "last", "last-of-300", "past-the-end", "negative", "into-a-string"],
)
def test_a_digest_replaces_exactly_the_listed_element(value, index, expected):
    records = [{"location": ["frames", index], "sha256": "d"}]
    assert with_digests({"frames": value}, records) == {"frames": expected}
