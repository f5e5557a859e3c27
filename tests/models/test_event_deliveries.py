"""Claiming outgoing deliveries (models/event_deliveries.py), on every database: a wave's
claims in one statement, each due delivery claimed once, the ones not due or held by
another claim left alone, exactly as one claim at a time leaves them."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import text, update

from falbridge.models import event_deliveries
from falbridge.models.db import transaction
from falbridge.models.tables import EventDelivery, utcnow
from falbridge.worker.notify import manage
from tests.plugins.waiting import run_at_once
from tests.worker.notify.helpers import complete, deliveries, new_job

LEASE_S = 60.0


def _deliveries(notifying, jobs: int) -> list[int]:
    manage.create(notifying.url, ["job.completed"])
    for _ in range(jobs):
        complete(new_job().id)
    return [d.id for d in deliveries()]


def _not_due_until(delivery_id: int, seconds: float) -> None:
    with transaction() as s:
        s.execute(
            update(EventDelivery)
            .where(EventDelivery.id == delivery_id)
            .values(next_attempt_at=utcnow() + timedelta(seconds=seconds))
        )


def test_a_waves_due_deliveries_are_claimed_at_once_and_the_others_left_alone(notifying):
    due, later, taken, delivered = _deliveries(notifying, 4)
    _not_due_until(later, 3600)
    with transaction() as s:
        assert event_deliveries.claim(s, taken, LEASE_S) is not None  # another worker's
        assert event_deliveries.claim(s, delivered, LEASE_S) is not None
    with transaction() as s:  # and one its worker delivered
        s.execute(update(EventDelivery).where(EventDelivery.id == delivered).values(status="delivered"))
    with transaction() as s:
        claimed = event_deliveries.claim_all(s, [due, later, taken, delivered, 10**9], LEASE_S)
    assert list(claimed) == [due]
    by_id = {d.id: d for d in deliveries()}
    assert (claimed[due].attempt, claimed[due].event_id) == (1, by_id[due].event_id)
    assert by_id[due].status == "in_flight" and by_id[due].attempts == 1
    assert (by_id[later].status, by_id[later].attempts) == ("pending", 0)
    assert by_id[taken].attempts == 1  # not claimed twice


def test_a_claim_returns_what_the_attempt_needs_and_counts_the_attempt(notifying):
    [only] = _deliveries(notifying, 1)
    [row] = deliveries()
    with transaction() as s:
        [claim] = event_deliveries.claim_all(s, [only], LEASE_S).values()
    assert (claim.delivery_id, claim.attempt, claim.event_id) == (only, 1, row.event_id)
    assert (claim.subscription_id, claim.target) == (row.subscription_id, row.target)
    with transaction() as s:
        assert event_deliveries.claim_all(s, [only], LEASE_S) == {}  # in flight, its lease running
        assert event_deliveries.claim_all(s, [], LEASE_S) == {}


def test_an_expired_lease_is_claimed_again_as_the_next_attempt(notifying):
    [only] = _deliveries(notifying, 1)
    with transaction() as s:
        assert event_deliveries.claim(s, only, -1.0) is not None  # a lease already over
    with transaction() as s:
        [claim] = event_deliveries.claim_all(s, [only], LEASE_S).values()
    assert claim.attempt == 2


def test_a_delivery_another_claim_holds_is_skipped_not_waited_for(notifying, engine):
    # A sweeper's re-drive racing a dispatch: the wave takes what nobody holds at once.
    if engine.dialect.name != "postgresql":
        pytest.skip("row locks are PostgreSQL's; SQLite serialises writers")
    held, free = _deliveries(notifying, 2)
    with transaction() as holder:
        assert list(event_deliveries.claim_all(holder, [held], LEASE_S)) == [held]
        with transaction() as s:  # while the holder's transaction is open
            s.execute(text("SET LOCAL lock_timeout = '5s'"))  # waiting would fail the test
            assert list(event_deliveries.claim_all(s, [held, free], LEASE_S)) == [free]
    assert {d.id: d.attempts for d in deliveries()} == {held: 1, free: 1}


def test_waves_racing_over_the_same_deliveries_claim_each_once(notifying):
    ids = _deliveries(notifying, 6)
    orders = [ids, ids[::-1], ids[1::2] + ids[::2], ids[::2] + ids[1::2]]
    next_order = iter(orders)
    lock = threading.Lock()

    def claim() -> list[int]:
        with lock:
            order = next(next_order)
        with transaction() as s:
            return list(event_deliveries.claim_all(s, order, LEASE_S))

    won = run_at_once(claim, times=len(orders))
    assert sorted(i for claimed in won for i in claimed) == sorted(ids)
    assert {d.attempts for d in deliveries()} == {1}
