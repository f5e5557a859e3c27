"""No secret ever lands in a log line, a database row, a Redis key or an API response.

The session's pipeline runs with FAL_KEY and the API token set to recognisable sentinels
(tests/plugins/pipeline.py). This test drives real jobs through the HTTP API, the
in-process Celery worker, the sandbox as fal and the receiver, with every logger at
DEBUG (SQLAlchemy's included, so every statement, parameter and row read is logged),
then searches everything it captured for any piece of either secret.
"""

from __future__ import annotations

import base64
import json
import logging
import os

import httpx
import pytest
from sqlalchemy import inspect, select, text

from falbridge.logs import JsonFormatter
from falbridge.models.db import get_engine, transaction
from falbridge.models.jobs import create_job
from falbridge.models.tables import WebhookDelivery
from tests.plugins.pipeline import API_HEADERS, TEST_API_TOKEN, TEST_FAL_KEY
from tests.plugins.waiting import poll_until

KEY_ID, KEY_SECRET = TEST_FAL_KEY.split(":")
SENTINELS = [
    TEST_FAL_KEY,
    KEY_ID,
    KEY_SECRET,
    TEST_API_TOKEN,
    # as they would look base64-encoded (a Basic header, a data URI)
    base64.b64encode(TEST_FAL_KEY.encode()).decode(),
    base64.b64encode(TEST_API_TOKEN.encode()).decode(),
]
LOGGERS = [
    "",
    "celery",
    "celery.app.trace",
    "celery.worker",
    "kombu",
    "httpx",
    "httpcore",
    "werkzeug",
    "falbridge",
    "sqlalchemy.engine",
    "sqlalchemy.pool",
]


class Everything(logging.Handler):
    """Every record as text, and as the JSON line FALBRIDGE_LOG_FORMAT=json writes (its
    fields are more than the message: the ids of significant events)."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.json_lines: list[str] = []
        self.json = JsonFormatter()
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.append(self.format(record))
        except Exception as exc:  # a record that can't be formatted is still searched
            self.lines.append(f"{record.name} {record.msg!r} {record.args!r} ({exc})")
        try:
            self.json_lines.append(self.json.format(record))
        except Exception as exc:
            self.json_lines.append(f"unformattable as JSON: {record.name} {record.__dict__!r} ({exc})")


@pytest.fixture
def all_logs():
    handler = Everything()
    # The root logger, plus every logger that doesn't pass its records up to it (Celery's).
    names = set(LOGGERS) | {
        name
        for name, logger in logging.root.manager.loggerDict.items()
        if isinstance(logger, logging.Logger) and not logger.propagate
    }
    loggers = [logging.getLogger(name) for name in names]
    saved = [(logger, logger.level) for logger in loggers]
    hooked = [logger for logger in loggers if logger is logging.root or not logger.propagate]
    for logger in loggers:
        logger.setLevel(logging.DEBUG)
    for logger in hooked:
        logger.addHandler(handler)
    try:
        yield handler
    finally:
        for logger in hooked:
            logger.removeHandler(handler)
        for logger, level in saved:
            logger.setLevel(level)


def _cat_uri() -> str:
    from falbridge.demo import CAT

    return "data:image/png;base64," + base64.b64encode(CAT.read_bytes()).decode()


def _dump_database(url: str) -> str:
    """Every row of every table (alembic's too), as text; bytes columns decoded leniently."""
    engine = get_engine(url)
    out = []
    with engine.connect() as conn:
        for table in inspect(conn).get_table_names():
            for row in conn.execute(text(f'SELECT * FROM "{table}"')):
                for value in row:
                    if isinstance(value, (bytes, bytearray, memoryview)):
                        out.append(bytes(value).decode("latin-1"))
                    else:
                        out.append(repr(value))
            out.append(f"-- {table}")
    return "\n".join(out)


def _dump_redis(url: str) -> str:
    import redis

    client = redis.Redis(unix_socket_path=url.removeprefix("redis+socket://"))
    out = []
    for key in client.scan_iter(count=1000):
        kind = client.type(key).decode()
        read = {
            "string": lambda key: client.get(key),
            "list": lambda key: client.lrange(key, 0, -1),
            "hash": lambda key: client.hgetall(key),
            "set": lambda key: client.smembers(key),
            "zset": lambda key: client.zrange(key, 0, -1),
        }.get(kind, lambda key: b"")
        value = read(key)
        out.append(f"{key!r} {value!r}")
    return "\n".join(out)


def _every_delivery_applied_and_logged(lines: list[str]) -> bool:
    with transaction() as s:
        unapplied = s.scalars(
            select(WebhookDelivery.id).where(WebhookDelivery.verified, WebhookDelivery.processed_at.is_(None))
        ).all()
    # The drain logs once per run, after its batches commit: "drain: {outcome: count} ...".
    return not unapplied and any("drain: " in line for line in lines)


def test_no_secret_in_logs_rows_or_responses(pipeline, all_logs, capfd, redis_url):
    assert os.environ["FAL_KEY"] == TEST_FAL_KEY  # the worker really uses the sentinel key
    seen: list[str] = []

    def call(method: str, path: str, **kwargs) -> httpx.Response:
        response = httpx.request(method, pipeline.receiver_url + path, timeout=30, **kwargs)
        seen.append(f"{response.status_code} {response.headers!r} {response.text}")
        return response

    api = {"headers": API_HEADERS}
    evf = call(
        "POST",
        "/api/jobs",
        json={
            "endpoint_id": "fal-ai/evf-sam",
            "external_id": "hygiene-1",
            "input": {"prompt": "cat", "image_url": _cat_uri()},
        },
        **api,
    )
    broken = call(
        "POST",
        "/api/jobs",
        json={
            "endpoint_id": "fal-ai/evf-sam",
            "input": {"prompt": "cat", "image_url": "http://127.0.0.1:9/missing.png"},
        },
        **api,
    )
    other = call(
        "POST",
        "/api/jobs",
        json={"endpoint_id": "fal-ai/some/model", "input": {"n": 1}, "metadata": {"who": "hygiene"}},
        **api,
    )
    assert {evf.status_code, broken.status_code, other.status_code} == {202}
    jobs = pipeline.wait_terminal(*(r.json()["id"] for r in (evf, broken, other)), timeout=60)
    assert [j.status for j in jobs] == ["completed", "failed", "completed"]
    with transaction() as s:
        pending, _ = create_job(s, "fal-ai/some/model", {"n": 2})

    call("GET", "/api/jobs", **api)
    call("GET", "/api/jobs?status=failed&limit=1", **api)
    for job in jobs:
        call("GET", f"/api/jobs/{job.id}", **api)
    assert call("POST", f"/api/jobs/{jobs[0].id}/cancel", **api).status_code == 409
    assert call("POST", f"/api/jobs/{pending.id}/cancel", **api).status_code == 202
    assert (
        call(
            "POST",
            "/api/jobs",
            json={
                "endpoint_id": "fal-ai/evf-sam",
                "external_id": "hygiene-1",
                "input": {"prompt": "dog", "image_url": _cat_uri()},
            },
            **api,
        ).status_code
        == 409
    )
    # Refused callers, including one sending the FAL key as if it were an API token.
    assert (
        call("GET", "/api/jobs", headers={"Authorization": "Bearer wrong-token-0123456789"}).status_code
        == 401
    )
    assert call("GET", "/api/jobs", headers={"Authorization": f"Bearer {TEST_FAL_KEY}"}).status_code == 401
    assert call("GET", "/api/jobs", headers={"Authorization": f"Key {TEST_FAL_KEY}"}).status_code == 401
    assert call("GET", f"/api/jobs/{jobs[0].id}").status_code == 401
    # A caller's Authorization header is not among the headers a rejected delivery keeps.
    # (The signature headers are kept, as evidence: whatever a forger puts there is stored.)
    assert (
        call(
            "POST",
            "/webhooks/fal",
            content=b"{}",
            headers={"Authorization": f"Bearer {TEST_API_TOKEN}", "X-Fal-Webhook-Signature": "ab" * 64},
        ).status_code
        == 401
    )
    call("GET", "/api/openapi.json")
    call("GET", "/healthz")
    pipeline.sandbox.wait_idle(timeout=20)
    # The last callbacks are applied after the sandbox is idle: wait for the drain to have
    # applied every stored delivery and logged it.
    poll_until(lambda: _every_delivery_applied_and_logged(all_logs.lines), bool, timeout=20)
    # fal's stored callbacks, listed, shown and re-applied (each was processed already).
    listed = call("GET", "/api/deliveries", **api).json()["deliveries"]
    assert listed
    for delivery in listed:
        call("GET", f"/api/deliveries/{delivery['id']}", **api)
        call("POST", f"/api/deliveries/{delivery['id']}/reapply", **api)

    logs = "\n".join(all_logs.lines)
    captured = capfd.readouterr()
    places = {
        "logs": logs,
        "json logs": "\n".join(all_logs.json_lines),
        "stdout": captured.out,
        "stderr": captured.err,
        "responses": "\n".join(seen),
        "database": _dump_database(os.environ["DATABASE_URL"]),
        "redis": _dump_redis(redis_url),
    }
    # Not vacuous: the capture saw the receiver, the worker's tasks and its calls to fal,
    # every SQL statement, and the jobs themselves. (Celery's own task-trace lines are
    # decided when the worker starts, at WARNING, so there are none to search.)
    names = {line.split(" ")[0] for line in all_logs.lines}
    assert {
        "werkzeug",
        "falbridge.worker.tasks",
        "falbridge.worker.fal.client",
        "sqlalchemy.engine.Engine",
    } <= names, names
    assert "submit " in logs and "drain: " in logs and "SELECT" in logs
    assert str(jobs[0].id) in places["database"] and "hygiene" in places["responses"]
    # The JSON lines carry the significant events with their ids, each line one object.
    events = [json.loads(line) for line in all_logs.json_lines if line.startswith("{")]
    assert len(events) == len(all_logs.json_lines)
    transitions = [e for e in events if e.get("event") == "job.transition"]
    assert {"job_id", "request_id", "from_status", "to_status"} <= set(transitions[0])
    assert any(e["job_id"] == str(jobs[0].id) and e["to_status"] == "completed" for e in transitions)
    assert {"delivery.stored", "delivery.rejected"} <= {e.get("event") for e in events}
    leaks = [
        (where, sentinel)
        for where, haystack in places.items()
        for sentinel in SENTINELS
        if sentinel in haystack
    ]
    assert not leaks, leaks
