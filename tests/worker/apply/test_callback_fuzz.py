"""Property tests on the callback parser: any body is a Callback or a CallbackFormatError.

Only bodies fal signed reach the parser (the receiver verifies first), but a body the
parser chokes on would be a delivery that fails every time the sweeper retries it.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from falbridge.worker.apply.callback import Callback, CallbackFormatError, parse_callback

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=25,
)
callback_like = st.fixed_dictionaries(
    {},
    optional={
        "request_id": st.one_of(st.text(max_size=40), json_values),
        "gateway_request_id": st.one_of(st.text(max_size=40), json_values),
        "status": st.one_of(st.sampled_from(["OK", "ERROR", "ok", ""]), json_values),
        "payload": json_values,
        "payload_error": json_values,
        "error": json_values,
    },
)


def _parse(body: bytes) -> Callback | None:
    try:
        callback = parse_callback(body)
    except CallbackFormatError as exc:
        assert str(exc)
        return None
    assert isinstance(callback.request_id, str) and callback.request_id
    assert callback.ok in (True, False)
    assert callback.payload_error is None or isinstance(callback.payload_error, str)
    assert callback.error is None or isinstance(callback.error, str)
    return callback


@FUZZ
@given(body=st.binary(max_size=4096))
@example(body=b"")
@example(body=b"\xef\xbb\xbf{}")
@example(body=b"\xff\xfe\x00\x00")
@example(body=b'{"request_id": "r", "status": "OK"}\x00')
def test_any_bytes(body):
    _parse(body)


@FUZZ
@given(doc=callback_like, encoding=st.sampled_from(["utf-8", "utf-16", "utf-32"]))
def test_any_callback_shaped_json(doc, encoding):
    callback = _parse(json.dumps(doc).encode(encoding))
    if callback is not None:
        assert callback.request_id == doc["request_id"] and callback.ok == (doc["status"] == "OK")


@FUZZ
@given(body=json_values.map(lambda v: json.dumps(v).encode()))
def test_any_json_document(body):
    _parse(body)


@pytest.mark.parametrize(
    "body", [b"[" * 100_000, b'{"request_id": "r", "status": "OK", "payload": ' + b"[" * 100_000 + b"}"]
)
def test_deeply_nested_body_is_a_format_error(body):
    with pytest.raises(CallbackFormatError, match="nested too deeply"):
        parse_callback(body)


@pytest.mark.parametrize("number", [b"NaN", b"-Infinity", b"1e999"])
def test_a_parsed_payload_is_strict_json(number):
    with pytest.raises(CallbackFormatError, match="not strict JSON"):
        parse_callback(b'{"request_id": "r", "status": "OK", "payload": {"x": ' + number + b"}}")
