"""The outbox under concurrency and crashes, on every database, with real threads: one
event (and one delivery per subscription) per transition however many workers race; one
sender per delivery however many workers claim it; the sweeper re-drives what is due,
what was never dispatched, and what a dead worker left in flight. Also rotation and
replay."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from falbridge.config import SweepConfig
from falbridge.models import event_deliveries as outgoing
from falbridge.models.db import transaction
from falbridge.models.jobs import lock_job, transition
from falbridge.models.states import EventSource, JobStatus
from falbridge.models.tables import EventDelivery, JobEvent, utcnow
from falbridge.worker import inline
from falbridge.worker.notify import manage
from falbridge.worker.notify.deliver import Outcome, deliver
from falbridge.worker.sweep import sweep
from tests.plugins.subscriber import Answer
from tests.plugins.waiting import poll_until
from tests.worker.notify.helpers import complete, deliveries, new_job, one_delivery, verified

SWEEP_NOW = SweepConfig(
    pending_grace_s=3600,
    delivery_grace_s=0,
    silent_after_s=3600,
    poll_every_s=3600,
    outcome_unknown_grace_s=3600,
)


def test_racing_terminal_transitions_make_one_event_and_one_delivery(notifying):
    manage.create(notifying.url, ["job.completed", "job.failed"])
    job = new_job()
    barrier = threading.Barrier(6)

    def move(target: JobStatus) -> bool:
        barrier.wait()
        with transaction() as s:
            return transition(s, lock_job(s, job.id), target, EventSource.WEBHOOK)

    with ThreadPoolExecutor(6) as pool:
        moved = list(pool.map(move, [JobStatus.COMPLETED, JobStatus.FAILED] * 3))
    assert moved.count(True) == 1
    with transaction() as s:
        terminal = s.scalar(
            select(func.count()).select_from(JobEvent).where(JobEvent.to_status.in_(["completed", "failed"]))
        )
    assert terminal == 1 and len(deliveries()) == 1


def test_eight_workers_claiming_one_delivery_send_it_once(notifying):
    manage.create(notifying.url, ["job.completed"])
    job = new_job()
    complete(job.id)
    delivery_id = one_delivery().id
    barrier = threading.Barrier(8)

    def attempt(_: int) -> Outcome:
        barrier.wait()
        return deliver(delivery_id).outcome

    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(attempt, range(8)))
    assert outcomes.count(Outcome.DELIVERED) == 1 and outcomes.count(Outcome.NOT_DUE) == 7
    assert len(notifying.received) == 1 and one_delivery().attempts == 1


def test_the_sweeper_sends_what_was_never_dispatched(notifying):
    made = manage.create(notifying.url, ["job.completed"])
    job = new_job()
    complete(job.id)  # no broker here: nothing was enqueued
    report = sweep(inline.run, SWEEP_NOW)
    assert report.notifications_due == 1
    assert verified(notifying.wait_for(1)[0], made["secret"])["data"]["id"] == str(job.id)
    assert one_delivery().status == "delivered"
    assert sweep(inline.run, SWEEP_NOW).notifications_due == 0


def test_a_delivery_left_in_flight_by_a_dead_worker_is_sent_again(notifying):
    manage.create(notifying.url, ["job.completed"])
    job = new_job()
    complete(job.id)
    delivery_id = one_delivery().id
    with transaction() as s:  # a worker claims it, then dies before it sends or records
        assert outgoing.claim(s, delivery_id, lease_s=0) is not None
    assert one_delivery().status == "in_flight"
    assert sweep(inline.run, SWEEP_NOW).notifications_due == 1
    assert one_delivery().status == "delivered" and one_delivery().attempts == 2
    assert len(notifying.wait_for(1)) == 1


def test_a_lease_still_running_keeps_others_off(notifying):
    manage.create(notifying.url, ["job.completed"])
    job = new_job()
    complete(job.id)
    delivery_id = one_delivery().id
    with transaction() as s:
        assert outgoing.claim(s, delivery_id, lease_s=600) is not None
    assert deliver(delivery_id).outcome is Outcome.NOT_DUE
    assert sweep(inline.run, SWEEP_NOW).notifications_due == 0
    assert notifying.received == []


def test_a_rotated_secret_signs_beside_the_old_one_during_the_overlap(notifying, monkeypatch):
    made = manage.create(notifying.url, ["job.status_changed"])
    rotated = manage.rotate_secret(made["id"])
    assert rotated["secret"] != made["secret"] and rotated["previous_secret_expires_at"]
    assert "secret" not in manage.show(made["id"])
    job = new_job()
    assert deliver(one_delivery().id).outcome is Outcome.DELIVERED
    [request] = notifying.wait_for(1)
    assert len(request.headers["webhook-signature"].split(" ")) == 2
    verified(request, made["secret"], rotated["secret"])
    monkeypatch.setenv("FALBRIDGE_NOTIFY_ROTATION_OVERLAP_S", "0")
    again = manage.rotate_secret(made["id"])
    complete(job.id)
    for delivery in deliveries(status="pending"):
        deliver(delivery.id)
    later = notifying.wait_for(4)[-1]
    assert len(later.headers["webhook-signature"].split(" ")) == 1
    verified(later, again["secret"])


def test_replaying_an_event_sends_it_again_under_the_same_id(notifying):
    made = manage.create(notifying.url, ["job.completed"])
    job = new_job()
    complete(job.id)
    delivery = one_delivery()
    assert deliver(delivery.id).outcome is Outcome.DELIVERED
    assert manage.replay_event(delivery.event_id) == [delivery.id]
    assert one_delivery().status == "pending"
    assert deliver(delivery.id).outcome is Outcome.DELIVERED
    first, second = notifying.wait_for(2)
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    verified(second, made["secret"])
    assert manage.replay_event(10**9) is None


def test_replay_since_covers_events_from_before_the_subscription(notifying):
    early = new_job()
    complete(early.id)
    since = utcnow()
    late = new_job()
    complete(late.id)
    made = manage.create(notifying.url, ["job.status_changed"])
    assert manage.replay_since(made["id"], since) == 4  # the late job's four transitions
    for delivery in deliveries():
        deliver(delivery.id)
    ids = {verified(r, made["secret"])["data"]["id"] for r in notifying.wait_for(4)}
    assert ids == {str(late.id)}


def test_a_subscription_deleted_during_a_transition_does_not_fail_it(notifying, engine):
    """The transition's fan-out holds the subscriptions it read (FOR KEY SHARE), so a delete
    racing it waits for its commit instead of pulling the row from under its delivery."""
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite serialises writers")
    made = manage.create(notifying.url, ["job.status_changed"])
    job = new_job()
    with transaction() as s:
        assert transition(s, lock_job(s, job.id), JobStatus.SUBMITTED, EventSource.WEBHOOK)
        with ThreadPoolExecutor(1) as pool:
            deleting = pool.submit(manage.delete, made["id"])
            poll_until(
                lambda: deleting.done() or _waiting_on_a_lock(engine),
                lambda settled: settled,
                timeout=10,
            )
            assert not deleting.done()  # it waits for this transaction
            s.commit()
            assert deleting.result(timeout=10) is True
    assert deliveries() == [] and manage.listing() == []


def _waiting_on_a_lock(engine) -> bool:
    with engine.connect() as conn:
        return bool(
            conn.exec_driver_sql(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE wait_event_type = 'Lock' AND datname = current_database()"
            ).scalar()
        )


def test_the_longer_a_delivery_waits_in_a_deep_queue_the_less_often_it_is_redriven(notifying, monkeypatch):
    """A broker backlog minutes deep must not be fed a copy of every waiting delivery at
    each sweep: a re-drive waits as long as the delivery has been overdue (grace at least,
    an hour at most)."""
    monkeypatch.setenv("FALBRIDGE_DELIVERY_GRACE_S", "30")
    manage.create(notifying.url, ["job.status_changed"])
    job = new_job()
    complete(job.id)
    fresh, late, ancient = (d.id for d in deliveries()[:3])
    now = utcnow()
    with transaction() as s:
        for delivery_id, overdue_s in ((fresh, 1), (late, 600), (ancient, 86_400)):
            s.execute(
                update(EventDelivery)
                .where(EventDelivery.id == delivery_id)
                .values(next_attempt_at=now - timedelta(seconds=overdue_s), redrive_after=None)
            )
    with transaction() as s:
        assert set(outgoing.due(s, now, batch=10)) >= {fresh, late, ancient}
    with transaction() as s:
        again = outgoing.due(s, now + timedelta(seconds=31), batch=10)
    assert fresh in again and late not in again and ancient not in again  # only it, after grace
    marks = {d.id: (d.redrive_after - now).total_seconds() for d in deliveries()}
    assert marks[late] == pytest.approx(600, abs=2)
    assert marks[ancient] == pytest.approx(outgoing.MAX_REDRIVE_GAP_S, abs=2)


def test_a_worker_overtaken_after_its_lease_records_its_attempt_and_leaves_the_state(notifying):
    """Worker A's attempt hangs past its lease; worker B claims the delivery again and
    delivers it; then A's answer arrives. Both attempts are in the log, the delivery is
    B's (delivered, two attempts), and A's late record changes none of that."""
    manage.create(notifying.url, ["job.completed"])
    notifying.answer(Answer(hang=True))  # A's request; B's, the next, gets 200
    job = new_job()
    complete(job.id)
    delivery_id = one_delivery().id
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(deliver, delivery_id)
        notifying.wait_for(1)  # A has claimed, and its attempt is on the wire
        _expire_the_lease(delivery_id)
        assert deliver(delivery_id).outcome is Outcome.DELIVERED  # B, while A still waits
        notifying.release()
        assert first.result(timeout=10).outcome is Outcome.DELIVERED
    ended = one_delivery()
    assert (ended.status, ended.attempts, ended.lease_until) == ("delivered", 2, None)
    [logged] = manage.delivery_log()
    assert [a["status_code"] for a in logged["attempt_log"]] == [200, 200]


def _expire_the_lease(delivery_id: int) -> None:
    """What the lease's running out looks like to the next claim (no wait for 30 s)."""
    with transaction() as s:
        s.execute(
            update(EventDelivery)
            .where(EventDelivery.id == delivery_id)
            .values(lease_until=utcnow() - timedelta(seconds=1))
        )
