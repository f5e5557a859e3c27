import json

import pytest

from falbridge.worker.apply.callback import CallbackFormatError, parse_callback
from falbridge.worker.apply.result_files import find_files


def test_evf_sam_image_is_one_file():
    out = {
        "image": {
            "url": "https://v3.fal.media/files/x/mask.png",
            "content_type": "image/png",
            "file_name": "mask.png",
            "file_size": 20411,
        }
    }
    assert list(find_files(out)) == [
        {
            "path": "image",
            "url": "https://v3.fal.media/files/x/mask.png",
            "content_type": "image/png",
            "file_name": "mask.png",
            "file_size": 20411,
            "width": None,
            "height": None,
        }
    ]


def test_nested_and_listed_files_with_dimensions():
    out = {
        "results": {"bboxes": [{"x": 1.0, "y": 2.0, "w": 3.0, "h": 4.0, "label": ""}]},
        "images": [
            {"url": "u1", "width": 10, "height": 20, "content_type": "image/jpeg"},
            {"url": "u2", "file_size": 5},
        ],
        "meta": {"url": "https://not-a-file.example"},
    }
    files = list(find_files(out))
    assert [(f["path"], f["url"], f["width"], f["height"]) for f in files] == [
        ("images[0]", "u1", 10, 20),
        ("images[1]", "u2", None, None),
    ]


def test_florence_without_image_has_no_files():
    assert list(find_files({"results": {"bboxes": []}, "image": None})) == []


def test_wrongly_typed_fields_are_dropped_not_trusted():
    [f] = find_files({"image": {"url": "u", "file_size": "big", "width": True, "content_type": 3}})
    assert f["file_size"] is None and f["width"] is None and f["content_type"] is None


@pytest.mark.parametrize(
    "body,ok,needs_fetch",
    [
        (b'{"request_id":"r","status":"OK","payload":{"a":1}}', True, False),
        (
            b'{"request_id":"r","gateway_request_id":"g","status":"OK","payload":{"a":1},"error":null}',
            True,
            False,
        ),
        (b'{"request_id":"r","status":"OK","payload":null,"payload_error":"too big"}', True, True),
        (
            b'{"request_id":"r","status":"ERROR","error":"Invalid status code: 404","payload":null,'
            b'"payload_error":"not json"}',
            False,
            True,
        ),
        (
            b'{"request_id":"r","status":"ERROR","error":"Invalid status code: 422","payload":{"detail":[]}}',
            False,
            False,
        ),
    ],
)
def test_callback_shapes_fal_sends(body, ok, needs_fetch):
    callback = parse_callback(body)
    assert callback.request_id == "r" and callback.ok is ok and callback.needs_fetch is needs_fetch


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"[]",
        b'{"status":"OK"}',
        b'{"request_id":7,"status":"OK"}',
        b'{"request_id":"r","status":"DONE"}',
        b"\xff\xfe",
    ],
)
def test_malformed_callbacks_are_rejected(body):
    with pytest.raises(CallbackFormatError):
        parse_callback(body)


def test_text_the_database_cannot_store_is_never_kept_from_a_callback():
    body = {
        "request_id": "req-1",
        "gateway_request_id": "gw\u0000",
        "status": "OK",
        "error": "bad\ud800",
        "payload": {"images": [{"url": "u", "caption": "a cat\u0000"}]},
    }
    callback = parse_callback(json.dumps(body).encode())
    # The payload as if fal could not send it: the result is fetched, and the fetch decides.
    assert callback.payload is None and callback.needs_fetch
    assert callback.payload_error == (
        "payload not kept: contains a NUL character, which cannot be stored (at payload.images[0].caption)"
    )
    assert callback.gateway_request_id is None
    assert callback.error == "bad\ufffd"


def test_a_storable_payload_and_payload_error_are_kept_as_sent():
    body = {"request_id": "r", "status": "OK", "payload": {"x": "\u00e9\ud83d\ude00"}, "payload_error": "e"}
    callback = parse_callback(json.dumps(body).encode())
    assert (callback.payload, callback.payload_error) == ({"x": "\u00e9\U0001f600"}, "e")
