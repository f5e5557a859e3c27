"""A commit's deliveries in waves (worker/notify/deliver_batch.py), against a real
subscriber over HTTP: every due one sent once and recorded, two transactions a wave, the
ones not due left alone, a failed one retried on its own, two batches racing for the same
deliveries sending each once."""

from __future__ import annotations

from falbridge.models.states import JobStatus
from falbridge.worker import side_by_side
from falbridge.worker.notify import manage
from falbridge.worker.notify.deliver import Outcome
from falbridge.worker.notify.deliver_batch import deliver_all
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
