"""One attempt at its edges, against the real subscriber, on every database: how much of
the answer is read and kept (the first KiB, however the subscriber sends it), the latency
recorded, a redirect's target in the error, a minute as the line between a countdown and
the sweeper, the lease, why a delivery ends when there is nobody to send it to, the
environment's proxy settings left alone, an error's length, and what is counted."""

from __future__ import annotations

import socket
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from sqlalchemy import create_engine, delete
from sqlalchemy.pool import NullPool

from falbridge.models.states import JobStatus
from falbridge.models.tables import Job, utcnow
from falbridge.worker.notify import manage
from falbridge.worker.notify.deliver import Delivered, Outcome, deliver
from tests.plugins.subscriber import Answer
from tests.worker.notify.helpers import (
    attempts_counted,
    complete,
    counted_since,
    deliveries,
    move,
    new_job,
    one_delivery,
)

KIB = 1024  # what an attempt keeps of the answer (docs/webhooks-out.md: "the first KiB")


def _one_attempt() -> dict:
    [logged] = manage.delivery_log()
    [attempt] = logged["attempt_log"]
    return attempt


def _subscribed_job(notifying) -> int:
    """A subscription to job.completed and one job completed: its delivery's id."""
    manage.create(notifying.url, ["job.completed"])
    job = new_job()
    complete(job.id)
    return one_delivery().id


@pytest.mark.parametrize("size", [KIB, KIB + 1])
def test_the_first_kib_of_the_answer_is_kept(notifying, size):
    body = b"x" * (KIB - 1) + b"yz"[: size - KIB + 1]
    notifying.answer(Answer(body=body))
    assert deliver(_subscribed_job(notifying)).outcome is Outcome.DELIVERED
    assert _one_attempt()["response_head"] == body[:KIB].decode()


@pytest.mark.parametrize("sent", [KIB, KIB + 476])
def test_an_answer_that_never_ends_is_read_as_far_as_its_first_kib(notifying, sent):
    """The subscriber promises a megabyte and stops after `sent` bytes: the attempt has
    what it keeps and is done, long before FALBRIDGE_NOTIFY_TIMEOUT_S."""
    body = bytes(ord("a") + n % 26 for n in range(sent))
    notifying.answer(Answer(body=body, stall=True))
    assert deliver(_subscribed_job(notifying)).outcome is Outcome.DELIVERED
    attempt = _one_attempt()
    assert (attempt["status_code"], attempt["error"]) == (200, None)
    assert attempt["response_head"] == body[:KIB].decode()


def test_an_answer_sent_in_pieces_is_read_until_its_end(notifying):
    body = b'{"ok":true,"note":"' + b"n" * 580 + b'"}'
    notifying.answer(Answer(body=body, parts=3, pause_s=0.05))
    assert deliver(_subscribed_job(notifying)).outcome is Outcome.DELIVERED
    assert _one_attempt()["response_head"] == body.decode()


def test_the_latency_recorded_is_the_attempts_own(notifying):
    """A subscriber that takes 0.2 s: the latency is at least that, and at most what the
    whole `deliver` took (claim and record included)."""
    delivery_id = _subscribed_job(notifying)
    notifying.answer(Answer(pause_s=0.2))
    started = time.perf_counter()
    assert deliver(delivery_id).outcome is Outcome.DELIVERED
    total_ms = (time.perf_counter() - started) * 1000
    assert 200 <= _one_attempt()["latency_ms"] <= total_ms


def test_an_error_is_kept_to_its_first_1000_characters(notifying):
    """A subscriber that answers no HTTP: httpx's error quotes what it sent, 1,500 bytes."""
    notifying.answer(Answer(raw=b"HTTP/1.1 2x0 " + b"y" * 1500 + b"\r\n\r\n"))
    assert deliver(_subscribed_job(notifying)).outcome is Outcome.RETRYING
    error = one_delivery().last_error
    assert (error[:41], len(error)) == ("RemoteProtocolError: illegal status line:", 1000)


def test_each_attempt_is_counted_by_its_outcome_and_one_not_due_is_not(notifying):
    manage.create(notifying.url, ["job.status_changed"])
    job = new_job()
    move(job.id, JobStatus.SUBMITTED, JobStatus.IN_PROGRESS)
    failing, delivered, gone = (d.id for d in deliveries())
    notifying.answer(500, 200, 410)
    before = attempts_counted()
    outcomes = [deliver(failing), deliver(delivered), deliver(gone), deliver(delivered)]
    assert [done.outcome for done in outcomes] == [
        Outcome.RETRYING,
        Outcome.DELIVERED,
        Outcome.EXHAUSTED,
        Outcome.NOT_DUE,  # delivered already: nothing sent, nothing counted
    ]
    assert counted_since(before) == {"retrying": 1.0, "delivered": 1.0, "exhausted": 1.0}


def test_a_redirects_target_is_named_up_to_200_characters(notifying):
    location = notifying.base_url + "/moved/" + "p" * 300
    notifying.answer(Answer(307, headers={"Location": location}))
    assert deliver(_subscribed_job(notifying)).outcome is Outcome.RETRYING
    assert one_delivery().last_error == f"redirect (307) to {location[:200]}: not followed"


@pytest.mark.parametrize(("retry_after", "countdown"), [(10, 10.0), (60, 60.0), (61, None)])
def test_a_retry_due_within_a_minute_is_a_countdown_and_later_ones_the_sweepers(
    notifying, monkeypatch, retry_after, countdown
):
    """Retry-After sets the wait (the schedule's 5 s is shorter). Up to a minute, the task
    is enqueued again with that countdown and the sweeper keeps off it for its grace
    period after it is due; beyond, nothing is enqueued and the sweeper takes it when due."""
    monkeypatch.setenv("FALBRIDGE_NOTIFY_SCHEDULE_SCALE", "1")
    monkeypatch.setenv("FALBRIDGE_DELIVERY_GRACE_S", "30")
    delivery_id = _subscribed_job(notifying)
    notifying.answer(Answer(429, headers={"Retry-After": str(retry_after)}))
    before = utcnow()
    assert deliver(delivery_id) == Delivered(Outcome.RETRYING, countdown)
    after = utcnow()
    waiting = one_delivery()
    assert (
        before + timedelta(seconds=retry_after)
        <= waiting.next_attempt_at
        <= after + timedelta(seconds=retry_after)
    )
    grace = timedelta(seconds=30 if countdown else 0)
    assert waiting.redrive_after - waiting.next_attempt_at == grace


def test_an_attempt_in_flight_holds_its_lease_for_three_timeouts_and_thirty_seconds(notifying, monkeypatch):
    """Longer than an attempt can take: httpx's timeout applies to connecting, sending and
    each read alike."""
    monkeypatch.setenv("FALBRIDGE_NOTIFY_TIMEOUT_S", "10")
    delivery_id = _subscribed_job(notifying)
    notifying.answer(Answer(hang=True))
    before = utcnow()
    with ThreadPoolExecutor(1) as pool:
        sending = pool.submit(deliver, delivery_id)
        notifying.wait_for(1)  # claimed, and the attempt is on the wire
        after = utcnow()
        lease_until = one_delivery().lease_until
        notifying.release()
        assert sending.result(timeout=10).outcome is Outcome.DELIVERED
    lease = timedelta(seconds=3 * 10 + 30)
    assert before + lease <= lease_until <= after + lease


def test_a_subscription_disabled_by_a_user_ends_its_deliveries_saying_so(notifying):
    made = manage.create(notifying.url, ["job.completed"])
    job = new_job()
    complete(job.id)
    manage.update(made["id"], enabled=False)
    assert deliver(one_delivery().id).outcome is Outcome.EXHAUSTED
    ended = one_delivery()
    assert (ended.status, ended.last_error) == ("exhausted", "subscription disabled: by a user")
    assert notifying.received == []


def test_a_subscription_disabled_by_its_health_ends_its_deliveries_with_the_reason(notifying):
    made = manage.create(notifying.url, ["job.status_changed"])
    job = new_job()
    move(job.id, JobStatus.SUBMITTED)
    first, second = (d.id for d in deliveries())
    notifying.answer(410)
    assert deliver(first).outcome is Outcome.EXHAUSTED
    reason = manage.show(made["id"])["disabled_reason"]
    assert reason.startswith("the subscriber answered 410 Gone at ")
    assert deliver(second).outcome is Outcome.EXHAUSTED
    assert deliveries()[1].last_error == f"subscription disabled: {reason}"
    assert len(notifying.received) == 1


def test_an_event_whose_job_is_gone_ends_its_delivery_unsent(notifying, engine):
    """What a transaction reading under read committed (PostgreSQL) sees when a job is
    deleted between its reading the event and the job: the event, then no job. Made here
    by deleting the job row alone, its foreign keys not enforced for that statement."""
    manage.create(notifying.url, ["job.completed"])
    job = new_job()
    complete(job.id)
    _delete_the_job_alone(engine, job.id)
    assert deliver(one_delivery().id).outcome is Outcome.EXHAUSTED
    ended = one_delivery()
    assert (ended.status, ended.last_error) == ("exhausted", "event deleted")
    assert notifying.received == []


def test_the_environments_proxy_settings_are_not_used(notifying, monkeypatch):
    """A worker's environment may name a proxy for its own traffic: subscribers are
    reached directly, at the address that was checked (here the proxy does not answer)."""
    with socket.socket() as dead:
        dead.bind(("127.0.0.1", 0))  # bound, never listening: connections to it are refused
        proxy = f"http://127.0.0.1:{dead.getsockname()[1]}"
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
            monkeypatch.setenv(name, proxy)
        for name in ("NO_PROXY", "no_proxy"):
            monkeypatch.delenv(name, raising=False)
        assert deliver(_subscribed_job(notifying)).outcome is Outcome.DELIVERED
    assert len(notifying.wait_for(1)) == 1


def _delete_the_job_alone(engine, job_id) -> None:
    if engine.dialect.name == "sqlite":
        bare = create_engine(engine.url, poolclass=NullPool)  # SQLite's default: foreign keys off
        try:
            with bare.begin() as conn:
                assert conn.execute(delete(Job).where(Job.id == job_id)).rowcount == 1
        finally:
            bare.dispose()
        return
    with engine.begin() as conn:
        conn.exec_driver_sql("SET LOCAL session_replication_role = replica")  # no foreign-key triggers
        assert conn.execute(delete(Job).where(Job.id == job_id)).rowcount == 1
