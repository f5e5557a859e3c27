from pathlib import Path

import pytest

from falbridge.worker.input_files import MAX_INLINE_BYTES, inline_local_files, path_to_data_uri, to_data_uri

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16


def test_bytes_and_paths_become_data_uris_strings_stay(tmp_path):
    image = tmp_path / "cat.png"
    image.write_bytes(PNG)
    out = inline_local_files(
        {"image_url": image, "mask": PNG, "prompt": "cat.png", "nested": [{"u": Path(image)}]}
    )
    assert out["image_url"].startswith("data:image/png;base64,")
    assert out["mask"] == out["image_url"]
    assert out["prompt"] == "cat.png"  # a string is never guessed to be a path
    assert out["nested"][0]["u"] == out["image_url"]


def test_jpeg_sniffed_and_unknown_falls_back():
    assert to_data_uri(b"\xff\xd8\xff\xe0abc").startswith("data:image/jpeg;base64,")
    assert to_data_uri(b"hello").startswith("data:application/octet-stream;base64,")


def test_missing_and_oversized_files_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="no such file"):
        path_to_data_uri(tmp_path / "nope.png")
    with pytest.raises(ValueError, match="limited to"):
        to_data_uri(b"\x00" * (MAX_INLINE_BYTES + 1))
