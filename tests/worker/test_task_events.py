"""Celery task events for Flower and `celery events` (FALBRIDGE_TASK_EVENTS): a real
`falbridge worker` process, started with them on, is read back with Celery's own event
receiver. Every task shows its readable name and ids as its only arguments; the same
worker serves its metrics on a port of its own and logs JSON lines."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import uuid

import httpx
from prometheus_client.parser import text_string_to_metric_families

import falbridge
from falbridge.worker import celery_app as celery_module
from falbridge.worker.celery_app import ensure_broker
from falbridge.worker.tasks import poll_job, process_delivery
from tests.plugins.db import free_port
from tests.plugins.waiting import poll_until

# What a task's arguments may look like in an event: a tuple of ids, nothing else.
IDS_ONLY = re.compile(r"\((?:'[0-9a-f-]{36}'|\d+),?\)")


def test_the_setting_turns_events_on(monkeypatch):
    assert "worker_send_task_events" not in celery_module._from_config()
    monkeypatch.setenv("FALBRIDGE_TASK_EVENTS", "1")
    settings = celery_module._from_config()
    assert settings["worker_send_task_events"] is True
    assert settings["task_send_sent_event"] is True


class Events:
    """Celery's event receiver, capturing in a thread of its own until stopped."""

    def __init__(self, app):
        self.seen: list[dict] = []
        self.connection = app.connection_for_read()
        self.receiver = app.events.Receiver(self.connection, handlers={"*": self.seen.append})
        self.thread = threading.Thread(target=self.receiver.capture, kwargs={"wakeup": False}, daemon=True)

    def __enter__(self) -> Events:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.receiver.should_stop = True
        self.thread.join(10)
        self.connection.release()

    def of_type(self, kind: str) -> list[dict]:
        return [event for event in list(self.seen) if event["type"] == kind]


def test_a_real_worker_sends_task_events_with_ids_only(pipeline_env, db_url, tmp_path):
    app = ensure_broker()
    metrics_port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": db_url,
        "FALBRIDGE_TASK_EVENTS": "1",
        "FALBRIDGE_WORKER_METRICS_PORT": str(metrics_port),
        "FALBRIDGE_METRICS_DIR": str(tmp_path / "metrics"),
        "FALBRIDGE_LOG_FORMAT": "json",
    }
    log_path = tmp_path / "worker.log"
    with Events(app) as events, log_path.open("wb") as log_file:
        worker = subprocess.Popen(
            [sys.executable, "-m", "falbridge", "worker", "--pool", "threads", "--concurrency", "2"],
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
        try:
            # Its worker-online event proves both: events are on, and we are listening.
            poll_until(lambda: events.of_type("worker-online"), bool, timeout=90)
            job_id, delivery_id = str(uuid.uuid4()), 987654
            poll_job.delay(job_id)
            process_delivery.delay(delivery_id)
            done = poll_until(
                lambda: events.of_type("task-succeeded"),
                lambda found: len(found) >= 2,
                timeout=60,
                describe=lambda found: f"{found}; log: {log_path.read_text()[-2000:]}",
            )
            received = events.of_type("task-received")
            metrics = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=30).text
            # A submit: the worker POSTs to fal with the webhook URL, whose token must not
            # reach the log (httpx logs every request's URL at INFO).
            submitted = falbridge.submit("fal-ai/some/model", {"prompt": "x"})
            poll_until(lambda: falbridge.get(submitted.id).request_id, bool, timeout=60)
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.wait(60)
    assert {event["name"] for event in received} >= {"falbridge.poll_job", "falbridge.process_delivery"}
    args = {event["name"]: event["args"] for event in received}
    assert args["falbridge.poll_job"] == f"('{job_id}',)"
    assert args["falbridge.process_delivery"] == f"({delivery_id},)"
    for event in received:
        assert IDS_ONLY.fullmatch(event["args"]) and event["kwargs"] == "{}", event
    assert len(done) >= 2
    samples = {
        (sample.name, tuple(sample.labels.values())): sample.value
        for family in text_string_to_metric_families(metrics)
        for sample in family.samples
    }
    assert samples[("falbridge_metrics_database_up", ())] == 1, metrics
    assert samples[("falbridge_jobs", ("pending",))] == 0
    assert ("falbridge_inbox_backlog", ()) in samples
    log_text = log_path.read_text()
    lines = [line for line in log_text.splitlines() if line.startswith("{")]
    assert lines and all(json.loads(line)["level"] for line in lines)
    assert "fal_webhook" not in log_text and "token=" not in log_text and "token%3D" not in log_text
