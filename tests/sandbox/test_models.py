"""Fake models: evf-sam masks and validation, florence boxes, echo, input images (§5)."""

from __future__ import annotations

import httpx
import pytest

from tests.plugins.sandbox import verify_fal_signature
from tests.sandbox.helpers import (
    ECHO,
    EVF_SAM,
    FLORENCE,
    closed_port_url,
    data_uri,
    jpeg_header,
    png_bytes,
    read_png,
    status_of,
    submit,
)


@pytest.fixture
def client(sandbox):
    with sandbox.client() as client:
        yield client


def _run(sandbox, client, endpoint, payload, sink):
    submitted = submit(client, sandbox.url, endpoint, payload, webhook=sink.url).json()
    sandbox.wait_idle()
    # Only fal's callbacks: a "closed" port chosen at collection may since be the sink's,
    # and then the sandbox's download of a missing image is a GET the sink records too.
    callbacks = [hook for hook in sink.received if hook.method == "POST"]
    hooks = [hook for hook in callbacks if hook.json()["request_id"] == submitted["request_id"]]
    assert len(hooks) == 1
    assert verify_fal_signature(hooks[0], sandbox.jwks())
    return submitted, hooks[0].json()


def _fetch_png(image):
    fetched = httpx.get(image["url"], verify=False)
    assert fetched.status_code == 200
    assert fetched.headers["content-type"] == image["content_type"] == "image/png"
    assert image["file_size"] == len(fetched.content) == int(fetched.headers["content-length"])
    return read_png(fetched.content)


@pytest.mark.parametrize("revert", [False, True])
def test_evf_sam_returns_a_real_png_mask_of_the_input_size(sandbox, client, webhook_sink, revert):
    payload = {"prompt": "the cat", "image_url": data_uri(png_bytes(64, 48)), "revert_mask": revert}
    submitted, hook = _run(sandbox, client, EVF_SAM, payload, webhook_sink)

    assert hook["status"] == "OK"
    image = hook["payload"]["image"]
    assert set(image) == {"url", "content_type", "file_name", "file_size"}
    assert image["file_name"] == "mask.png"
    assert image["url"].startswith(f"{sandbox.url}/files/")
    assert client.get(submitted["response_url"]).json() == hook["payload"]
    width, height, rows = _fetch_png(image)
    assert (width, height) == (64, 48)
    inside, outside = (0, 255) if revert else (255, 0)
    assert rows[24][32] == inside
    assert rows[0][0] == outside and rows[47][63] == outside
    assert set(b"".join(rows)) == {0, 255}


def test_evf_sam_reads_jpeg_size_from_a_loopback_url(sandbox, client, webhook_sink):
    url = webhook_sink.serve_file("/inputs/photo.jpg", jpeg_header(320, 200), "image/jpeg")
    _, hook = _run(sandbox, client, EVF_SAM, {"prompt": "x", "image_url": url}, webhook_sink)

    assert webhook_sink.file_hits == ["/inputs/photo.jpg"]
    assert _fetch_png(hook["payload"]["image"])[:2] == (320, 200)


@pytest.mark.parametrize(
    "payload, loc, error_type",
    [
        ({"image_url": "data:,x"}, ["body", "prompt"], "value_error.missing"),
        ({"prompt": "x"}, ["body", "image_url"], "value_error.missing"),
        ({"prompt": 3, "image_url": "data:,x"}, ["body", "prompt"], "type_error.str"),
        ({"prompt": "x", "image_url": "data:,x", "blur_mask": 4}, ["body", "blur_mask"], "value_error"),
        (
            {"prompt": "x", "image_url": "data:,x", "blur_mask": 51},
            ["body", "blur_mask"],
            "value_error.number.not_le",
        ),
        (
            {"prompt": "x", "image_url": "data:,x", "blur_mask": 2.5},
            ["body", "blur_mask"],
            "type_error.integer",
        ),
        (
            {"prompt": "x", "image_url": "data:,x", "mask_only": "yes"},
            ["body", "mask_only"],
            "type_error.bool",
        ),
        ({"prompt": "x", "image_url": "data:,x", "fill_holes": 1}, ["body", "fill_holes"], "type_error.bool"),
        (
            {"prompt": "x", "image_url": "data:,x", "expand_mask": -1},
            ["body", "expand_mask"],
            "value_error.number.not_ge",
        ),
    ],
)
def test_evf_sam_validation_errors_fail_the_job_with_422(
    sandbox, client, webhook_sink, payload, loc, error_type
):
    submitted, hook = _run(sandbox, client, EVF_SAM, payload, webhook_sink)

    assert hook["status"] == "ERROR"
    assert hook["error"] == "Invalid status code: 422"
    [item] = hook["payload"]["detail"]
    assert (item["loc"], item["type"]) == (loc, error_type)
    assert isinstance(item["msg"], str)
    result = client.get(submitted["response_url"])
    assert (result.status_code, result.json()) == (422, hook["payload"])
    status = status_of(client, submitted)
    assert status["status"] == "COMPLETED"
    assert status["error_type"] == error_type and status["error"]
    assert sandbox.request(submitted["request_id"])["outcome"] == "ERROR"


def test_evf_sam_reports_every_invalid_field(sandbox, client, webhook_sink):
    _, hook = _run(sandbox, client, EVF_SAM, {"blur_mask": 51, "semantic_type": "no"}, webhook_sink)

    assert [item["loc"][1] for item in hook["payload"]["detail"]] == [
        "prompt",
        "image_url",
        "semantic_type",
        "blur_mask",
    ]
    assert hook["payload"]["detail"][0] == {
        "loc": ["body", "prompt"],
        "msg": "field required",
        "type": "value_error.missing",
    }


@pytest.mark.parametrize(
    "image_url, error_type",
    [
        ("closed-port", "file_download_error"),  # a URL nobody listens on, made when the test runs
        ("data:image/png;base64,@@not-base64@@", "file_download_error"),
        ("ftp://example.invalid/a.png", "file_download_error"),
        (data_uri(b"just some text", "text/plain"), "image_load_error"),
        (data_uri(b"GIF89a" + b"\x00" * 20, "image/gif"), "image_load_error"),
    ],
)
def test_bad_input_images_fail_with_422(sandbox, client, webhook_sink, image_url, error_type):
    if image_url == "closed-port":
        image_url = closed_port_url("/missing.png")
    submitted, hook = _run(sandbox, client, EVF_SAM, {"prompt": "x", "image_url": image_url}, webhook_sink)

    assert hook["status"] == "ERROR" and hook["error"] == "Invalid status code: 422"
    [item] = hook["payload"]["detail"]
    assert item["loc"] == ["body", "image_url"]
    assert item["type"] == error_type
    assert item["input"] == image_url
    if error_type == "file_download_error":
        assert "could not be downloaded" in item["msg"]
    assert client.get(submitted["response_url"]).status_code == 422


def test_florence_boxes_lie_inside_the_image(sandbox, client, webhook_sink):
    for n in range(8):
        _, hook = _run(
            sandbox, client, FLORENCE, {"image_url": data_uri(png_bytes(100 + n, 60))}, webhook_sink
        )
        output = hook["payload"]
        boxes = output["results"]["bboxes"]
        assert 1 <= len(boxes) <= 5
        for box in boxes:
            assert box["label"] == ""
            assert box["x"] > 0 and box["y"] > 0 and box["w"] > 0 and box["h"] > 0
            assert box["x"] + box["w"] < 100 + n and box["y"] + box["h"] < 60
        image = output["image"]
        assert (image["width"], image["height"]) == (100 + n, 60)
        assert _fetch_png(image)[:2] == (100 + n, 60)


def test_florence_image_can_be_omitted(sandbox, client, webhook_sink):
    sandbox.set_config(florence_image_probability=0.0)
    _, hook = _run(sandbox, client, FLORENCE, {"image_url": data_uri(png_bytes(10, 10))}, webhook_sink)

    assert "image" not in hook["payload"]
    assert hook["payload"]["results"]["bboxes"]


def test_florence_requires_image_url(sandbox, client, webhook_sink):
    _, hook = _run(sandbox, client, FLORENCE, {}, webhook_sink)

    assert hook["payload"]["detail"][0]["loc"] == ["body", "image_url"]


def test_other_endpoints_echo_their_input(sandbox, client, webhook_sink):
    payload = {"anything": [1, 2, {"nested": True}]}
    submitted, hook = _run(sandbox, client, "fal-ai/florence-2-large/caption", payload, webhook_sink)

    assert hook["payload"] == {"endpoint_id": "fal-ai/florence-2-large/caption", "echo": payload}
    assert submitted["status_url"].startswith(f"{sandbox.url}/fal-ai/florence-2-large/requests/")
    assert client.get(submitted["response_url"]).json() == hook["payload"]
    _, echo_hook = _run(sandbox, client, ECHO, {}, webhook_sink)
    assert echo_hook["payload"] == {"endpoint_id": ECHO, "echo": {}}
