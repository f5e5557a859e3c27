"""Connections to subscribers are kept alive and shared (worker.download.connections),
on every database, against the real subscriber: a second POST reuses the first one's
connection, a connection the subscriber closed is not reused, cookies are not kept."""

from __future__ import annotations

from falbridge.worker.notify import manage
from falbridge.worker.notify.deliver import Outcome, deliver
from tests.plugins.subscriber import Answer
from tests.worker.notify.helpers import complete, deliveries, new_job


def _two_deliveries(notifying) -> list[int]:
    manage.create(notifying.url, ["job.completed"])
    for _ in range(2):
        complete(new_job().id)
    return [d.id for d in deliveries()]


def test_a_second_post_to_a_subscriber_reuses_the_first_ones_connection(notifying):
    for delivery_id in _two_deliveries(notifying):
        assert deliver(delivery_id).outcome is Outcome.DELIVERED
    first, second = notifying.wait_for(2)
    assert first.peer == second.peer


def test_a_connection_the_subscriber_closed_is_not_reused(notifying):
    # Answered as kept alive (no "Connection: close"), then closed: the next POST opens
    # another instead of failing down the dead one.
    notifying.answer(Answer(raw=b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
    outcomes = [deliver(delivery_id).outcome for delivery_id in _two_deliveries(notifying)]
    assert outcomes == [Outcome.DELIVERED, Outcome.DELIVERED]
    first, second = notifying.wait_for(2)
    assert first.peer != second.peer


def test_a_cookie_a_subscriber_sets_is_not_sent_back(notifying):
    notifying.answer(Answer(headers={"Set-Cookie": "session=abc; Path=/"}))
    for delivery_id in _two_deliveries(notifying):
        assert deliver(delivery_id).outcome is Outcome.DELIVERED
    first, second = notifying.wait_for(2)
    assert first.peer == second.peer and "cookie" not in second.headers
