"""Outgoing webhooks against a real subscriber over HTTP, on every database: the outbox
writes one delivery per (event, subscription) with the transition, `deliver` sends it
signed (checked by standardwebhooks), records each attempt, retries on the schedule,
honours Retry-After, gives up into a dead letter, disables on 410 or a long failure."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

from falbridge.models.states import JobStatus
from falbridge.models.tables import utcnow
from falbridge.worker.notify import manage
from falbridge.worker.notify.deliver import Outcome, deliver
from falbridge.worker.notify.schedule import MAX_ATTEMPTS
from tests.plugins.subscriber import Answer
from tests.plugins.waiting import poll_until
from tests.worker.notify.helpers import (
    attempts_counted,
    complete,
    counted_since,
    deliveries,
    move,
    new_job,
    one_delivery,
    subscription,
    verified,
)


def _due(delivery_id: int) -> Outcome:
    """Deliver it as soon as its next attempt is due (the schedule is scaled down)."""
    return poll_until(lambda: deliver(delivery_id).outcome, lambda outcome: outcome is not Outcome.NOT_DUE)


def test_a_terminal_transition_is_delivered_signed_without_the_input(notifying):
    made = manage.create(notifying.url, ["job.completed"], "orders")
    job = new_job()
    complete(job.id)
    delivery = one_delivery()  # the earlier transitions are not job.completed
    assert deliver(delivery.id).outcome is Outcome.DELIVERED
    [request] = notifying.wait_for(1)
    body = verified(request, made["secret"])
    assert request.headers["webhook-id"] == f"evt_{delivery.event_id}"
    assert not [name for name in request.headers if name.startswith("x-fal")]
    assert body["type"] == "job.completed"
    data = body["data"]
    assert data["id"] == str(job.id) and data["status"] == "completed" and data["result"] == {"boxes": [1, 2]}
    assert "input" not in data and data["metadata"] == {"order": 7}
    assert data["sequence"] == 4 and data["event"]["to_status"] == "completed"
    assert one_delivery().status == "delivered"


def test_status_changed_gets_every_transition_in_sequence(notifying):
    made = manage.create(notifying.url, ["job.status_changed"])
    job = new_job()
    complete(job.id)
    for delivery in deliveries():
        assert deliver(delivery.id).outcome is Outcome.DELIVERED
    bodies = [verified(r, made["secret"]) for r in notifying.wait_for(4)]
    assert [(b["type"], b["data"]["sequence"]) for b in bodies] == [
        ("job.status_changed", 1),
        ("job.status_changed", 2),
        ("job.status_changed", 3),
        ("job.completed", 4),
    ]
    assert len({r.headers["webhook-id"] for r in notifying.received}) == 4


def test_only_enabled_subscriptions_listing_the_type_get_a_delivery(notifying):
    wants = manage.create(notifying.url, ["job.failed"])
    manage.create(notifying.url, ["job.completed"])
    off = manage.create(notifying.url + "/off", ["job.failed"])
    manage.update(off["id"], enabled=False)
    job = new_job()
    move(job.id, JobStatus.FAILED, error="boom")
    assert [str(d.subscription_id) for d in deliveries()] == [wants["id"]]


def test_an_event_is_in_the_outbox_with_nobody_subscribed(notifying):
    job = new_job()
    complete(job.id)
    assert deliveries() == []
    later = manage.create(notifying.url, ["job.completed"])
    assert manage.replay_since(later["id"], utcnow().replace(year=2000)) == 1
    assert deliver(one_delivery().id).outcome is Outcome.DELIVERED
    assert verified(notifying.wait_for(1)[0], later["secret"])["data"]["id"] == str(job.id)


def test_a_failure_is_recorded_and_retried_until_it_succeeds(notifying):
    manage.create(notifying.url, ["job.completed"])
    notifying.answer(Answer(500, body=b"database is down"), 502)
    job = new_job()
    complete(job.id)
    delivery = one_delivery()
    assert deliver(delivery.id).outcome is Outcome.RETRYING
    failed = one_delivery()
    assert failed.status == "pending" and failed.attempts == 1 and failed.last_status_code == 500
    assert subscription(failed.subscription_id).failing_since is not None
    assert _due(delivery.id) is Outcome.RETRYING
    assert _due(delivery.id) is Outcome.DELIVERED
    [log] = manage.delivery_log(str(failed.subscription_id))
    assert [a["status_code"] for a in log["attempt_log"]] == [500, 502, 200]
    assert log["attempt_log"][0]["response_head"] == "database is down"
    assert all(a["latency_ms"] >= 0 for a in log["attempt_log"])
    assert subscription(failed.subscription_id).failing_since is None
    assert len({r.headers["webhook-id"] for r in notifying.wait_for(3)}) == 1  # same event id


def test_after_the_last_attempt_the_delivery_is_a_dead_letter(notifying, monkeypatch):
    monkeypatch.setenv("FALBRIDGE_NOTIFY_SCHEDULE_SCALE", "0.00001")  # a day in a second
    manage.create(notifying.url, ["job.completed"])
    notifying.answer(*[500] * MAX_ATTEMPTS)
    job = new_job()
    complete(job.id)
    delivery = one_delivery()
    outcomes = [deliver(delivery.id).outcome] + [_due(delivery.id) for _ in range(MAX_ATTEMPTS - 1)]
    assert outcomes[-1] is Outcome.EXHAUSTED and outcomes.count(Outcome.RETRYING) == MAX_ATTEMPTS - 1
    assert len(notifying.received) == MAX_ATTEMPTS
    [dead] = manage.delivery_log(status="exhausted")
    assert dead["attempts"] == MAX_ATTEMPTS and len(dead["attempt_log"]) == MAX_ATTEMPTS
    assert deliver(delivery.id).outcome is Outcome.NOT_DUE  # nothing more is sent


def test_a_redirect_is_not_followed(notifying):
    manage.create(notifying.url, ["job.completed"])
    notifying.answer(Answer(307, headers={"Location": notifying.base_url + "/elsewhere"}))
    job = new_job()
    complete(job.id)
    assert deliver(one_delivery().id).outcome is Outcome.RETRYING
    assert [r.path for r in notifying.received] == ["/hooks"]
    assert "not followed" in one_delivery().last_error


def test_410_gone_disables_the_subscription_and_says_why(notifying):
    made = manage.create(notifying.url, ["job.completed"])
    notifying.answer(410)
    job = new_job()
    complete(job.id)
    assert deliver(one_delivery().id).outcome is Outcome.EXHAUSTED
    shown = manage.show(made["id"])
    assert shown["enabled"] is False and "410 Gone" in shown["disabled_reason"]
    other = new_job()
    complete(other.id)
    assert len(deliveries()) == 1  # a disabled subscription gets no new deliveries


def test_retry_after_on_429_is_honoured(notifying, monkeypatch):
    monkeypatch.setenv("FALBRIDGE_NOTIFY_SCHEDULE_SCALE", "1")
    manage.create(notifying.url, ["job.completed"])
    notifying.answer(Answer(429, headers={"Retry-After": "120"}))
    job = new_job()
    complete(job.id)
    before = utcnow()
    assert deliver(one_delivery().id).outcome is Outcome.RETRYING
    wait = (one_delivery().next_attempt_at - before).total_seconds()
    assert 119 <= wait <= 125  # the schedule said ~5 s; the subscriber asked for 120


def test_a_subscription_failing_too_long_is_disabled(notifying, monkeypatch):
    monkeypatch.setenv("FALBRIDGE_NOTIFY_DISABLE_AFTER_S", "0.001")
    made = manage.create(notifying.url, ["job.status_changed"])
    notifying.answer(500, 500)
    job = new_job()
    first, second = deliveries()[0].id, None
    assert deliver(first).outcome is Outcome.RETRYING
    assert manage.show(made["id"])["enabled"] is True  # the run of failures has just begun
    move(job.id, JobStatus.SUBMITTED)
    second = deliveries()[1].id
    poll_until(
        lambda: utcnow(),
        lambda now: (now - subscription(uuid.UUID(made["id"])).failing_since).total_seconds() > 0.01,
    )
    assert deliver(second).outcome is Outcome.RETRYING
    shown = manage.show(made["id"])
    assert shown["enabled"] is False and "FALBRIDGE_NOTIFY_DISABLE_AFTER_S" in shown["disabled_reason"]
    assert _due(first) is Outcome.EXHAUSTED  # what was pending is not sent to a disabled one
    assert len(notifying.received) == 2


def test_a_timeout_and_a_dropped_connection_are_failed_attempts(notifying, monkeypatch):
    monkeypatch.setenv("FALBRIDGE_NOTIFY_TIMEOUT_S", "0.3")
    manage.create(notifying.url, ["job.completed"])
    notifying.answer(Answer(hang=True), Answer(drop=True))
    job = new_job()
    complete(job.id)
    delivery = one_delivery()
    assert deliver(delivery.id).outcome is Outcome.RETRYING
    assert "Timeout" in one_delivery().last_error
    assert _due(delivery.id) is Outcome.RETRYING
    assert one_delivery().last_status_code is None and one_delivery().last_error
    assert _due(delivery.id) is Outcome.DELIVERED


def test_the_address_is_checked_again_at_each_connection(notifying, monkeypatch):
    manage.create(notifying.url, ["job.completed"])
    monkeypatch.setenv("FALBRIDGE_NOTIFY_ALLOWED_NETWORKS", "10.0.0.0/8")
    job = new_job()
    complete(job.id)
    assert deliver(one_delivery().id).outcome is Outcome.RETRYING
    assert "non-public" in one_delivery().last_error
    assert notifying.received == []


def test_a_secret_no_configured_key_decrypts_is_a_failed_attempt_not_a_crash(notifying, monkeypatch):
    manage.create(notifying.url, ["job.completed"])
    monkeypatch.setenv("FALBRIDGE_SECRET_KEY", "another-deployment-key-" + "x" * 20)
    job = new_job()
    complete(job.id)
    assert deliver(one_delivery().id).outcome is Outcome.RETRYING
    assert "FALBRIDGE_SECRET_KEY" in one_delivery().last_error and notifying.received == []
    [attempt] = manage.delivery_log()[0]["attempt_log"]
    assert (attempt["status_code"], attempt["latency_ms"]) == (None, 0)  # nothing was sent


def test_a_subscription_deleted_mid_attempt_leaves_nothing_behind(notifying):
    made = manage.create(notifying.url, ["job.completed"])
    before = attempts_counted()
    notifying.answer(Answer(hang=True))
    job = new_job()
    complete(job.id)
    delivery_id = one_delivery().id
    with ThreadPoolExecutor(1) as pool:
        sending = pool.submit(deliver, delivery_id)
        notifying.wait_for(1)  # the attempt is on the wire
        assert manage.delete(made["id"])
        notifying.release()
        assert sending.result(timeout=10).outcome is Outcome.NOT_DUE
    assert deliveries() == [] and manage.delivery_log() == []
    assert counted_since(before) == {}  # an attempt nobody records is not counted either
