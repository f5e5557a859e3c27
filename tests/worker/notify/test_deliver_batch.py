"""A commit's deliveries in waves (worker/notify/deliver_batch.py), against a real
subscriber over HTTP: every due one sent once and recorded, two transactions a wave, the
ones not due left alone, a failed one retried on its own, two batches racing for the same
deliveries sending each once."""

from __future__ import annotations

import uuid

from sqlalchemy import update

import falbridge
from falbridge.models import event_deliveries
from falbridge.models.db import transaction
from falbridge.models.event_deliveries import AttemptResult, Claim
from falbridge.models.states import JobStatus
from falbridge.models.tables import EventDelivery, Subscription, utcnow
from falbridge.worker import side_by_side
from falbridge.worker.notify import manage
from falbridge.worker.notify.deliver import Outcome, Sent, record_all_in
from falbridge.worker.notify.deliver_batch import deliver_all
from tests.plugins.db import statements_sent
from tests.plugins.waiting import run_at_once
from tests.worker.notify.helpers import deliveries, move, new_job, verified

JOBS = 2 * side_by_side.PARALLEL + 1  # two full waves and one of a single delivery


def _completed_jobs(count: int) -> list[int]:
    for _ in range(count):
        move(new_job().id, JobStatus.SUBMITTED, JobStatus.COMPLETED, result={"ok": True})
    return [d.id for d in deliveries()]


def test_every_due_delivery_is_sent_once_and_recorded_two_transactions_a_wave(notifying, commits):
    made = manage.create(notifying.url, ["job.completed"])
    ids = _completed_jobs(JOBS)
    commits.clear()
    done = deliver_all(ids)
    assert [(i, d.outcome if d else None) for i, d in done] == [(i, Outcome.DELIVERED) for i in ids]
    waves = -(-JOBS // side_by_side.PARALLEL)
    assert len(commits) == 2 * waves
    received = notifying.wait_for(JOBS)
    assert sorted(r.headers["webhook-id"] for r in received) == sorted(
        {r.headers["webhook-id"] for r in received}
    )
    assert all(verified(r, made["secret"])["type"] == "job.completed" for r in received)
    assert {(d.status, d.attempts) for d in deliveries()} == {("delivered", 1)}


def test_deliveries_not_due_are_left_alone_and_a_failed_one_waits_for_its_retry(notifying):
    manage.create(notifying.url, ["job.completed"])
    first, second, third = _completed_jobs(3)
    assert deliver_all([first])[0][1].outcome is Outcome.DELIVERED
    notifying.answer(500)
    done = dict(deliver_all([first, second, third]))
    assert done[first].outcome is Outcome.NOT_DUE  # delivered already: not sent again
    retrying = [d for d in (done[second], done[third]) if d.outcome is Outcome.RETRYING]
    assert len(retrying) == 1 and retrying[0].retry_in_s is not None
    assert len(notifying.wait_for(3)) == 3
    assert sorted(d.status for d in deliveries()) == ["delivered", "delivered", "pending"]


def test_two_batches_racing_for_the_same_deliveries_send_each_once(notifying):
    manage.create(notifying.url, ["job.completed"])
    ids = _completed_jobs(JOBS)
    outcomes = run_at_once(lambda: [(i, d.outcome if d else None) for i, d in deliver_all(ids)])
    delivered = [i for done in outcomes for i, outcome in done if outcome is Outcome.DELIVERED]
    assert sorted(delivered) == ids  # each by one batch; the other found it not due
    assert len(notifying.wait_for(JOBS)) == JOBS
    assert {(d.status, d.attempts) for d in deliveries()} == {("delivered", 1)}


def test_a_wave_is_recorded_with_a_settling_update_each_one_insert_and_one_health_update(notifying, engine):
    manage.create(notifying.url, ["job.completed"])
    manage.create(notifying.url + "/two", ["job.completed"])
    ids = _completed_jobs(side_by_side.PARALLEL // 2)
    assert len(ids) == side_by_side.PARALLEL
    with statements_sent() as sent:
        done = deliver_all(ids)
    seen = [" ".join(sql.split()[:3]) for sql in sent]
    assert {d.outcome for _, d in done} == {Outcome.DELIVERED}
    # The claims, then what they send: the events, the subscriptions, the files, the
    # histories (no file, so no stored copy to read).
    reading = ["UPDATE event_deliveries SET", *["SELECT"] * 4]
    recording = [
        *["UPDATE event_deliveries SET"] * len(ids),  # each settled if its claim is still the latest
        "INSERT INTO delivery_attempts",
        "UPDATE subscriptions SET",
    ]
    assert [sql if not sql.startswith("SELECT") else "SELECT" for sql in seen] == reading + recording


def _claimed(ids: list[int]) -> list[Claim]:
    with transaction() as s:
        claimed = event_deliveries.claim_all(s, ids, 60.0)
    return [claimed[i] for i in ids]


def _failing_since(subscription_id) -> object:
    with transaction() as s:
        return s.get(Subscription, subscription_id).failing_since


def test_each_subscriptions_health_follows_its_attempts_in_the_order_of_the_wave(notifying, engine):
    """Recorded together as they would be one at a time: a success after a failure ends
    the run of failures, a failure after a success begins one."""
    made = [manage.create(f"{notifying.url}/{n}", ["job.completed"]) for n in range(3)]
    [mended, broken, fine] = [uuid.UUID(m["id"]) for m in made]
    with transaction() as s:
        s.execute(update(Subscription).where(Subscription.id == fine).values(failing_since=utcnow()))
    _completed_jobs(2)
    by = {sub: [d.id for d in deliveries(subscription_id=sub)] for sub in (mended, broken, fine)}
    ok, failed = AttemptResult(200, 1), AttemptResult(500, 1, error="HTTP 500")
    results = {mended: (failed, ok), broken: (ok, failed), fine: (ok, ok)}
    sent = [
        Sent(claim, results[sub][n])
        for n in range(2)
        for sub in (mended, broken, fine)
        for claim in _claimed([by[sub][n]])
    ]
    with transaction() as s:
        done = record_all_in(s, sent, falbridge.config.current().notify)
    assert sorted(d.outcome for d in done.values()) == sorted(
        [Outcome.DELIVERED] * 4 + [Outcome.RETRYING] * 2
    )
    assert _failing_since(mended) is None and _failing_since(fine) is None
    assert _failing_since(broken) is not None
    assert all(len(d["attempt_log"]) == 1 for d in manage.delivery_log())


def test_an_overtaken_claim_records_its_attempt_and_a_deleted_delivery_nothing(notifying):
    made = manage.create(notifying.url, ["job.completed"])
    kept = manage.create(notifying.url + "/kept", ["job.completed"])
    _completed_jobs(2)
    [overtaken, newer] = [d.id for d in deliveries(subscription_id=uuid.UUID(kept["id"]))]
    [first, _] = _claimed([overtaken, newer])
    with transaction() as s:  # its lease ran out and another worker claimed it again
        s.execute(update(EventDelivery).where(EventDelivery.id == overtaken).values(lease_until=utcnow()))
    [again] = _claimed([overtaken])
    gone = _claimed([d.id for d in deliveries(subscription_id=uuid.UUID(made["id"]))])
    assert manage.delete(made["id"])
    ok = AttemptResult(200, 1)
    with transaction() as s:
        done = record_all_in(
            s, [Sent(first, ok), *(Sent(c, ok) for c in gone)], falbridge.config.current().notify
        )
    assert done[overtaken].outcome is Outcome.DELIVERED  # its attempt was made and went through
    assert all(done[c.delivery_id].outcome is Outcome.NOT_DUE for c in gone)
    [row] = deliveries(id=overtaken)
    assert (row.status, row.attempts) == ("in_flight", again.attempt)  # the newer claim's to settle
    [logged] = [d for d in manage.delivery_log() if d["id"] == overtaken]
    assert len(logged["attempt_log"]) == 1
