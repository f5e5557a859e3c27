"""FALBRIDGE_LOG_FORMAT: a significant event is one JSON object per line, its ids as fields;
`text` is a line for people carrying the same message."""

from __future__ import annotations

import io
import json
import logging

from falbridge import logs


def _captured(log_format: str) -> tuple[logging.Handler, io.StringIO]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logs.formatter(log_format))
    return handler, out


def test_an_event_is_one_json_object_with_its_ids():
    handler, out = _captured("json")
    logs.EVENTS.addHandler(handler)
    logs.EVENTS.setLevel(logging.INFO)
    try:
        logs.event(
            "job.transition",
            "job j-1: submitted -> completed (webhook)",
            job_id="j-1",
            request_id="r-1",
            to_status="completed",
            count=2,
            nothing=None,
        )
        logs.EVENTS.info('a plain line with "quotes"\nand a newline')
    finally:
        logs.EVENTS.removeHandler(handler)
        logs.EVENTS.setLevel(logging.NOTSET)
    first, second = out.getvalue().splitlines()
    line = json.loads(first)
    assert line["event"] == "job.transition" and line["message"].startswith("job j-1")
    assert (line["job_id"], line["request_id"], line["count"], line["nothing"]) == ("j-1", "r-1", 2, None)
    assert (line["level"], line["logger"]) == ("INFO", "falbridge.events") and line["ts"].endswith("+00:00")
    assert json.loads(second)["message"] == 'a plain line with "quotes"\nand a newline'
    assert "event" not in json.loads(second)


def test_text_is_for_people():
    handler, out = _captured("text")
    logs.EVENTS.addHandler(handler)
    logs.EVENTS.setLevel(logging.INFO)
    try:
        logs.event("delivery.rejected", "callback rejected: bad_signature", reason="bad_signature")
    finally:
        logs.EVENTS.removeHandler(handler)
        logs.EVENTS.setLevel(logging.NOTSET)
    text = out.getvalue()
    assert "INFO falbridge.events: callback rejected: bad_signature" in text
    assert not text.startswith("{")


def test_the_setting_is_read_and_checked(monkeypatch):
    from falbridge import config

    assert config.Config.from_environ({}).observability.log_format == "json"
    assert config.Config.from_environ({"FALBRIDGE_LOG_FORMAT": " TEXT "}).observability.log_format == "text"
    try:
        config.Config.from_environ({"FALBRIDGE_LOG_FORMAT": "xml"})
    except config.ConfigError as exc:
        assert str(exc).startswith("FALBRIDGE_LOG_FORMAT:") and "'xml'" in str(exc)
    else:
        raise AssertionError("xml accepted")


def test_endpoint_labels_are_an_allow_list():
    from falbridge import config

    cfg = config.Config.from_environ({}).observability
    assert cfg.endpoint_label("fal-ai/evf-sam") == "fal-ai/evf-sam"
    assert cfg.endpoint_label("fal-ai/florence-2-large/region-proposal") != "other"
    assert cfg.endpoint_label("someone/invented-this-1") == "other"
    mine = config.Config.from_environ({"FALBRIDGE_METRICS_ENDPOINTS": "a/b, c/d"}).observability
    assert (mine.endpoint_label("c/d"), mine.endpoint_label("fal-ai/evf-sam")) == ("c/d", "other")
