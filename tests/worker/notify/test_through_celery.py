"""The whole way, over real HTTP and a real Celery worker: a job submitted through the
API's action runs at the sandbox, its transitions write deliveries, the deliveries are
dispatched after their commit to the `deliver` task, and the subscriber gets every event
signed, each retry of a failing one coming back through the broker."""

from __future__ import annotations

import pytest

from falbridge.worker.actions import submit
from falbridge.worker.notify import manage
from tests.plugins.waiting import poll_until
from tests.worker.notify.helpers import deliveries, verified


@pytest.fixture
def to_subscriber(pipeline, subscriber, monkeypatch):
    monkeypatch.setenv("FALBRIDGE_NOTIFY_ALLOWED_NETWORKS", "127.0.0.0/8")
    monkeypatch.setenv("FALBRIDGE_NOTIFY_SCHEDULE_SCALE", "0.001")
    return subscriber


def test_a_jobs_events_reach_the_subscriber_through_celery(pipeline, to_subscriber):
    made = manage.create(to_subscriber.url, ["job.status_changed"])
    to_subscriber.answer(500)  # the first event fails once, and is retried through the broker
    job, _ = submit("fal-ai/some/model", {"n": 1})
    [final] = pipeline.wait_terminal(job.id)
    expected = len(final.events) + 1
    received = to_subscriber.wait_for(expected, timeout=20)
    bodies = {}
    for request in received:
        if request.answered == 200:
            body = verified(request, made["secret"])
            bodies[body["data"]["sequence"]] = body
    assert sorted(bodies) == list(range(1, len(final.events) + 1))
    last = bodies[max(bodies)]
    assert last["type"] == f"job.{final.status}" and last["data"]["status"] == final.status
    poll_until(deliveries, lambda rows: all(d.status == "delivered" for d in rows), timeout=10)
