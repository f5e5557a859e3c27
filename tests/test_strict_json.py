"""falbridge.strict_json: what every entry point (API, callbacks, CLI) accepts as JSON."""

from __future__ import annotations

import pytest

from falbridge import strict_json
from falbridge.strict_json import JSONRejected


@pytest.mark.parametrize("text", ["NaN", '{"a": Infinity}', "[-Infinity]", '{"a": 1e999}', "{", "", b"\xff"])
def test_what_is_not_strict_json_is_invalid(text):
    with pytest.raises(JSONRejected) as caught:
        strict_json.loads(text)
    assert caught.value.problem == "invalid_json"


def test_python_json_leniencies_are_refused_but_json_is_not():
    assert strict_json.loads('{"a": [1, 2.5, "x", null, true]}') == {"a": [1, 2.5, "x", None, True]}
    assert strict_json.loads("5") == 5 and strict_json.loads("null") is None


def test_depth_is_counted_in_containers_and_its_path_is_named():
    strict_json.loads('{"a": {"b": "deep string is fine"}}', max_depth=2)
    with pytest.raises(JSONRejected) as caught:
        strict_json.loads('{"a": {"b": [1]}}', max_depth=2)
    assert caught.value.problem == "too_deep" and caught.value.path == ("a", "b")
    assert str(caught.value) == "JSON nesting deeper than 2 levels at a.b"


def test_nesting_past_pythons_own_limit_is_too_deep_not_a_crash():
    with pytest.raises(JSONRejected) as caught:
        strict_json.loads("[" * 100_000 + "]" * 100_000)
    assert caught.value.problem == "too_deep"


@pytest.mark.parametrize(
    "text, path, what",
    [
        ('{"a": "x\\u0000y"}', ("a",), "a NUL character"),
        ('{"k\\ud800": 1}', ("k\ud800",), "an unpaired UTF-16 surrogate"),
        ('[0, ["\\udfff"]]', (1, 0), "an unpaired UTF-16 surrogate"),
    ],
)
def test_text_the_database_cannot_store_is_refused_when_asked(text, path, what):
    strict_json.loads(text)  # parsing alone accepts it
    with pytest.raises(JSONRejected) as caught:
        strict_json.loads(text, storable=True)
    assert caught.value.problem == "unstorable" and caught.value.path == path
    assert str(caught.value) == f"contains {what}, which cannot be stored"


def test_a_valid_surrogate_pair_is_one_storable_character():
    assert strict_json.loads('"\\ud83d\\ude00"', storable=True) == "\U0001f600"


def test_field_names_are_short_and_storable():
    assert strict_json.field_name(()) == "(body)"
    assert strict_json.field_name(("a", 0, "b")) == "a[0].b"
    assert strict_json.field_name(("x\x00" + "y" * 100,)) == "x\ufffd" + "y" * 62
    assert strict_json.field_name(tuple(range(40))).count("[") == 16


def test_is_strict_and_compact_size():
    assert strict_json.is_strict({"a": [1.5]}) and not strict_json.is_strict({"a": float("nan")})
    assert strict_json.compact_size({"a": "é"}) == len('{"a":"é"}'.encode())


def test_keys_per_object_are_limited_as_each_object_is_built():
    assert strict_json.loads('{"a": {"x": 1, "y": 2}, "b": 2}', max_keys=2) == {"a": {"x": 1, "y": 2}, "b": 2}
    with pytest.raises(JSONRejected) as caught:
        strict_json.loads('{"a": {"x": 1, "y": 2, "z": 3}}', max_keys=2)
    assert (
        caught.value.problem == "too_many_keys" and str(caught.value) == "JSON object with more than 2 keys"
    )
    # Parsing stops at that object: what follows it is never read (here, not even JSON).
    with pytest.raises(JSONRejected) as caught:
        strict_json.loads('[{"x": 1, "y": 2, "z": 3}, this is not JSON', max_keys=2)
    assert caught.value.problem == "too_many_keys"


def test_items_per_array_are_limited_and_the_array_named():
    assert strict_json.loads('{"a": [[1, 2]]}', max_items=2) == {"a": [[1, 2]]}
    with pytest.raises(JSONRejected) as caught:
        strict_json.loads('{"a": [[1, 2, 3]]}', max_items=2)
    assert caught.value.problem == "too_many_items" and caught.value.path == ("a", 0)
    assert str(caught.value) == "JSON array with more than 2 items at a[0]"
