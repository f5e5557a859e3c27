"""The sweep and the fal reads it starts jump the queue: a result whose callback was dropped
is lost once fal's retention passes (six minutes for 10 KB or more), so its poll must not
wait behind a backlog of submits and outgoing webhooks (docs/reliability.md, "fal's
retention window")."""

from __future__ import annotations

from kombu import Connection, Exchange, Producer, Queue

from falbridge.worker import broker, tasks
from falbridge.worker.celery_app import DEFAULT_PRIORITY, URGENT_PRIORITY, celery_app

URGENT = {"falbridge.reconcile", "falbridge.poll_job", "falbridge.fetch_result"}


def _priority(name: str) -> int:
    """The priority a message of this task is published with: its route's, else the default."""
    route = celery_app.amqp.router.route({}, name)
    return route.get("priority", celery_app.conf.task_default_priority)


def test_the_sweep_and_its_fal_reads_are_urgent_everything_else_waits():
    ours = {name: task for name, task in celery_app.tasks.items() if name.startswith("falbridge.")}
    assert set(ours) >= URGENT and len(ours) > len(URGENT)
    assert {name for name in ours if _priority(name) == URGENT_PRIORITY} == URGENT
    assert {_priority(name) for name in ours if name not in URGENT} == {DEFAULT_PRIORITY}
    assert tasks.poll_job.name in URGENT


def test_beat_sends_the_sweep_urgent():
    schedule = celery_app.conf.beat_schedule["sweep"]
    assert schedule["task"] == "falbridge.reconcile" and schedule["options"]["priority"] == URGENT_PRIORITY


def test_redis_hands_out_an_urgent_message_before_an_older_backlog(tmp_path):
    """What the two priorities rely on, on a real Redis: kombu's Redis transport keeps each
    priority step in its own list and reads the lower step first."""
    url = broker.embedded_url(tmp_path)
    queue = Queue(celery_app.conf.task_default_queue, Exchange("falbridge"), routing_key="falbridge")
    try:
        with Connection(url) as conn:
            producer = Producer(conn.default_channel, exchange=queue.exchange, routing_key="falbridge")
            queue(conn.default_channel).declare()
            for n in range(5):
                producer.publish({"backlog": n}, priority=DEFAULT_PRIORITY, declare=[queue])
            producer.publish({"poll": 1}, priority=URGENT_PRIORITY, declare=[queue])
            bound = queue(conn.default_channel)
            first = bound.get(no_ack=True)
            second = bound.get(no_ack=True)
            assert first is not None and first.payload == {"poll": 1}
            assert second is not None and second.payload == {"backlog": 0}
    finally:
        broker.stop(tmp_path)
