"""A job's own callbacks, over real HTTP and a real broker, on every database: its
notify_url gets its terminal event once, signed with the deployment's notify secret
(checked by standardwebhooks, through a rotation); its on_complete task is sent
(job_id, event_id) on the queue the user named; bad callbacks are refused before
anything is stored."""

from __future__ import annotations

import json
import threading

import pytest
from click.testing import CliRunner

import falbridge
from falbridge.cli import main
from falbridge.models import deployment_secrets
from falbridge.models.db import transaction
from falbridge.models.states import JobStatus
from falbridge.worker.celery_app import ensure_broker
from falbridge.worker.notify import hook, manage
from falbridge.worker.notify.deliver import Outcome, deliver
from tests.plugins.pipeline import TEST_SECRET_KEY
from tests.worker.notify.helpers import complete, deliveries, move, new_job, one_delivery, verified

NOTIFY = "notify_url"


def _notify_secret() -> str:
    with transaction() as s:
        return deployment_secrets.reveal(s, falbridge.config.current(), deployment_secrets.NOTIFY)


def test_a_notify_url_gets_the_terminal_event_once_signed_with_the_notify_secret(notifying):
    job = new_job(callbacks={"notify_url": notifying.url + "/job"})
    complete(job.id)
    delivery = one_delivery()  # the three earlier transitions are not terminal
    assert (delivery.target, delivery.subscription_id) == (NOTIFY, None)
    assert deliver(delivery.id).outcome is Outcome.DELIVERED
    [request] = notifying.wait_for(1)
    body = verified(request, _notify_secret())
    assert request.path == "/hooks/job" and request.headers["webhook-id"] == f"evt_{delivery.event_id}"
    assert body["type"] == "job.completed" and body["data"]["id"] == str(job.id)
    assert "input" not in body["data"]
    assert deliver(delivery.id).outcome is Outcome.NOT_DUE  # delivered: never sent again


def test_a_failing_notify_url_is_retried_and_disables_nothing(notifying):
    job = new_job(callbacks={"notify_url": notifying.url})
    notifying.answer(500, 410)
    move(job.id, JobStatus.FAILED, error="boom")
    delivery = one_delivery()
    assert deliver(delivery.id).outcome is Outcome.RETRYING
    outcome = None
    while outcome in (None, Outcome.NOT_DUE):  # the scaled-down schedule's next slot
        outcome = deliver(delivery.id).outcome
    assert outcome is Outcome.EXHAUSTED  # 410: this job's URL is gone, nothing else is
    assert one_delivery().last_status_code == 410


def test_the_notify_secret_is_shown_by_the_cli_and_rotates_with_an_overlap(notifying):
    runner = CliRunner()
    shown = runner.invoke(main, ["notify-secret", "show"])
    assert shown.exit_code == 0 and shown.output.startswith("whsec_")
    old = shown.output.strip()
    assert runner.invoke(main, ["notify-secret", "show"]).output.strip() == old  # one secret
    rotated = runner.invoke(main, ["notify-secret", "rotate"])
    assert rotated.exit_code == 0
    new = rotated.stdout.strip()
    assert new.startswith("whsec_") and new != old and _notify_secret() == new
    job = new_job(callbacks={"notify_url": notifying.url})
    complete(job.id)
    assert deliver(one_delivery().id).outcome is Outcome.DELIVERED
    [request] = notifying.wait_for(1)
    verified(request, old, new)  # either verifier passes during the overlap
    assert len(request.headers["webhook-signature"].split()) == 2


def test_the_notify_secret_is_stored_encrypted(notifying):
    secret = _notify_secret()
    with transaction() as s:
        row = s.get(deployment_secrets.DeploymentSecret, deployment_secrets.NOTIFY)
        stored = bytes(row.secret_encrypted)
    assert secret.encode() not in stored and secret.removeprefix("whsec_").encode() not in stored
    assert TEST_SECRET_KEY.encode() not in stored


def test_racing_makers_of_the_notify_secret_leave_one(notifying):
    seen: list[str] = []
    barrier = threading.Barrier(4)

    def make() -> None:
        barrier.wait()
        seen.append(_notify_secret())

    threads = [threading.Thread(target=make) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(seen)) == 1 and len(seen) == 4


def test_on_complete_sends_the_users_task_on_their_queue(notifying, redis_url, monkeypatch):
    monkeypatch.setenv("REDIS_URL", redis_url)
    app = ensure_broker()
    queue = "user-hooks-test"
    job = new_job(callbacks={"on_complete": "myapp.tasks.crop", "on_complete_queue": queue})
    complete(job.id)
    delivery = one_delivery()
    assert delivery.target == "on_complete"
    assert deliver(delivery.id).outcome is Outcome.DELIVERED
    with app.connection_for_read() as connection:
        message = connection.SimpleQueue(queue).get(timeout=10)
        message.ack()
    assert message.headers["task"] == "myapp.tasks.crop"
    args, _kwargs, _embed = message.payload  # Celery's message protocol 2
    assert args == [str(job.id), f"evt_{delivery.event_id}"]
    [logged] = manage.delivery_log(status="delivered")
    assert logged["attempt_log"][0]["response_head"] == f"sent myapp.tasks.crop to queue {queue}"


def test_on_complete_goes_to_celerys_default_queue_when_none_is_named():
    assert hook.DEFAULT_QUEUE == "celery"


def test_non_terminal_transitions_make_no_job_callback(notifying):
    job = new_job(callbacks={"notify_url": notifying.url, "on_complete": "myapp.tasks.crop"})
    move(job.id, JobStatus.SUBMITTED, JobStatus.IN_PROGRESS)
    assert deliveries() == []
    move(job.id, JobStatus.CANCELLED)
    assert sorted(d.target for d in deliveries()) == ["notify_url", "on_complete"]


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"notify_url": "http://10.1.2.3/hook"}, "notify_url"),
        ({"notify_url": "ftp://example.com/hook"}, "notify_url"),
        ({"on_complete": "1bad name"}, "on_complete"),
        ({"on_complete": "ok.task", "on_complete_queue": "no spaces"}, "on_complete_queue"),
        ({"on_complete_queue": "hooks"}, "on_complete_queue"),
    ],
)
def test_a_bad_callback_is_invalid_input_naming_it_and_stores_nothing(db_url, fields, field):
    with pytest.raises(falbridge.InvalidInput) as caught:
        falbridge.submit("fal-ai/some/model", {"n": 1}, **fields)
    assert [e["field"] for e in caught.value.errors] == [field]
    assert falbridge.list().jobs == ()


def test_the_payload_of_a_job_callback_is_the_job_without_input(notifying):
    job = new_job(callbacks={"notify_url": notifying.url})
    move(job.id, JobStatus.FAILED, error="boom")
    deliver(one_delivery().id)
    body = json.loads(notifying.wait_for(1)[0].body)
    assert body["type"] == "job.failed" and body["data"]["error"] == "boom"
