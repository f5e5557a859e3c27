"""A job's fal options: checked by fal's rules, stored as given, sent as fal's headers."""

from __future__ import annotations

import pytest
from fal_client import _headers as fal_client_headers

from falbridge.worker.fal.job_options import (
    InvalidOptions,
    JobOptions,
    checked_options,
    options_given,
    priority_of,
    submit_headers,
)

ALL = {
    "priority": "low",
    "start_timeout": 30,
    "object_lifecycle": 3600,
    "store_io": False,
    "tags": {"team": "vision", "run": "2026-11-30"},
}


@pytest.mark.parametrize("given", [3600, 3600.0])
def test_a_whole_number_written_with_a_point_is_that_integer(given):
    # JSON Schema counts 3600.0 as an integer; a client that serialises floats may send it.
    assert checked_options({"object_lifecycle": given}) == {"object_lifecycle": 3600}


@pytest.mark.parametrize("given", [3600.5, True, "3600"])
def test_object_lifecycle_is_a_whole_number_and_nothing_else(given):
    with pytest.raises(InvalidOptions, match=r"options\.object_lifecycle"):
        checked_options({"object_lifecycle": given})


def test_every_option_becomes_its_fal_header():
    assert submit_headers(checked_options(ALL)) == {
        "X-Fal-Queue-Priority": "low",
        "X-Fal-Request-Timeout": "30",
        "X-Fal-Object-Lifecycle-Preference": '{"expiration_duration_seconds":3600}',
        "X-Fal-Store-IO": "0",
        "X-Fal-Tags": "run=2026-11-30,team=vision",  # sorted: JSONB keeps no order
    }


def test_no_options_send_no_headers_and_store_nothing():
    assert checked_options(None) is None
    assert checked_options({}) is None
    assert checked_options({"priority": None, "tags": None}) is None
    assert submit_headers(None) == {} and submit_headers({}) == {}
    assert priority_of(None) == "normal" and priority_of({"priority": "low"}) == "low"


def test_only_the_options_given_are_stored():
    assert checked_options({"store_io": True, "priority": None}) == {"store_io": True}
    assert checked_options(JobOptions(start_timeout=2.5)) == {"start_timeout": 2.5}
    assert submit_headers({"start_timeout": 2.5, "store_io": True}) == {
        "X-Fal-Request-Timeout": "2.5",
        "X-Fal-Store-IO": "1",
    }


def test_the_python_keywords_make_the_same_options():
    assert options_given() is None
    assert options_given(priority="low", tags={"a": "b"}) == {"priority": "low", "tags": {"a": "b"}}


def test_headers_match_what_fal_client_sends_for_priority_and_start_timeout():
    sent: dict[str, str] = {}
    fal_client_headers.add_priority_header("low", sent)
    fal_client_headers.add_timeout_header(30, sent)
    ours = submit_headers({"priority": "low", "start_timeout": 30})
    assert set(ours) == set(sent)  # the same header names
    assert ours["X-Fal-Queue-Priority"] == sent["X-Fal-Queue-Priority"]
    # fal-client writes str(float): "30.0"; fal reads either as 30 seconds.
    assert float(ours["X-Fal-Request-Timeout"]) == float(sent["X-Fal-Request-Timeout"])
    with pytest.raises(ValueError):  # fal-client refuses what we refuse
        fal_client_headers.add_timeout_header(1, {})


@pytest.mark.parametrize(
    ("options", "field", "says"),
    [
        ({"prority": "low"}, "options.prority", "unknown option"),
        ({"priority": "high"}, "options.priority", "'normal' or 'low'"),
        ({"start_timeout": 1}, "options.start_timeout", "greater than 1"),
        ({"start_timeout": True}, "options.start_timeout", "valid number"),
        ({"start_timeout": "30"}, "options.start_timeout", "valid number"),
        ({"start_timeout": float("inf")}, "options.start_timeout", "finite"),
        ({"object_lifecycle": 0}, "options.object_lifecycle", "greater than or equal to 1"),
        ({"object_lifecycle": 2.5}, "options.object_lifecycle", "valid integer"),
        ({"store_io": "no"}, "options.store_io", "valid boolean"),
        ({"tags": {"Team": "a"}}, "options.tags", "a-z 0-9"),
        ({"tags": {"fal.team": "a"}}, "options.tags", "fal's own"),
        ({"tags": {"team": "a,b"}}, "options.tags", "without a comma"),
        ({"tags": {"team": "caf\u00e9"}}, "options.tags", "printable ASCII"),
        ({"tags": {"team": "x" * 257}}, "options.tags", "at most 256"),
        ({"tags": {f"k{i}": "v" for i in range(11)}}, "options.tags", "at most 10 tags"),
        ({"tags": {f"k{i}": "v" * 200 for i in range(6)}}, "options.tags", "1024 bytes"),
        ({"tags": {"team": 7}}, "options.tags.team", "valid string"),
    ],
)
def test_refused_options_are_named(options, field, says):
    with pytest.raises(InvalidOptions) as refused:
        checked_options(options)
    [error] = refused.value.errors
    assert error["field"] == field
    assert says in error["message"], error["message"]


def test_options_that_are_not_an_object_are_refused():
    with pytest.raises(InvalidOptions) as refused:
        checked_options(["priority", "low"])  # type: ignore[arg-type]
    assert refused.value.errors == [{"field": "options", "message": "must be a JSON object or null"}]


def test_the_limits_themselves_are_accepted():
    tags = {f"k{i}": "v" * 90 for i in range(10)}  # 10 pairs, 920 bytes
    assert checked_options({"tags": tags, "start_timeout": 1.01, "object_lifecycle": 1}) == {
        "tags": tags,
        "start_timeout": 1.01,
        "object_lifecycle": 1,
    }
    assert submit_headers({"tags": {"k": ""}}) == {"X-Fal-Tags": "k="}
