"""notify_url and on_complete from the outside: POST /api/jobs refuses a bad one with a
4xx naming the field and stores nothing; the CLI over the API submits a job with both,
and once it ends at the sandbox the subscriber gets its terminal event (signed with the
deployment's notify secret) and the user's queue its task, through the real worker."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

import falbridge
from falbridge.cli import main
from falbridge.models import deployment_secrets
from falbridge.models.db import transaction
from falbridge.webhooks.app import create_app
from falbridge.worker.celery_app import ensure_broker
from tests.plugins.pipeline import TEST_API_TOKEN
from tests.webhooks.api.test_jobs import authed, count
from tests.worker.notify.helpers import verified

SOME = "fal-ai/some/model"


@pytest.fixture
def client(db_url, redis_url, monkeypatch, tmp_path):
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("FALBRIDGE_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("FALBRIDGE_API_TOKENS", TEST_API_TOKEN)
    return authed(create_app())


@pytest.mark.parametrize(
    ("extra", "status", "field"),
    [
        ({"notify_url": "http://127.0.0.1:9/hook"}, 422, "notify_url"),
        ({"notify_url": 7}, 422, "notify_url"),
        ({"on_complete": "has space"}, 422, "on_complete"),
        ({"on_complete": ["a"]}, 422, "on_complete"),
    ],
)
def test_a_bad_callback_is_refused_naming_it(client, extra, status, field):
    response = client.post("/api/jobs", json={"endpoint_id": SOME, "input": {"n": 1}, **extra})
    assert response.status_code == status, response.json
    assert [d["field"] for d in response.json["error"]["details"]] == [field]
    assert count() == 0


def test_callbacks_of_a_job_submitted_over_the_api_reach_the_user(pipeline, subscriber, monkeypatch):
    monkeypatch.setenv("FALBRIDGE_NOTIFY_ALLOWED_NETWORKS", "127.0.0.0/8")
    monkeypatch.setenv("FALBRIDGE_API_TOKEN", TEST_API_TOKEN)
    queue = "user-hooks-e2e"
    submitted = CliRunner().invoke(
        main,
        [
            *("--api", pipeline.receiver_url, "submit", SOME, "--input", '{"n": 1}'),
            *("--notify-url", subscriber.url, "--on-complete", "myapp.tasks.x", "--on-complete-queue", queue),
        ],
        prog_name="falbridge",
    )
    assert submitted.exit_code == 0, submitted.output
    job_id = submitted.stdout.split()[0]
    [final] = pipeline.wait_terminal(job_id)
    [request] = subscriber.wait_for(1, timeout=20)
    with transaction() as s:
        secret = deployment_secrets.reveal(s, falbridge.config.current(), deployment_secrets.NOTIFY)
    body = verified(request, secret)
    assert body["type"] == f"job.{final.status}" and body["data"]["id"] == job_id
    with ensure_broker().connection_for_read() as connection:
        message = connection.SimpleQueue(queue).get(timeout=10)
        message.ack()
    assert message.headers["task"] == "myapp.tasks.x"
    assert message.payload[0] == [job_id, request.headers["webhook-id"]]
    assert json.loads(request.body)["data"]["sequence"] == len(final.events)
