"""Connections to subscribers are kept alive and shared (worker.notify.connections), on
every database, against the real subscriber: a second POST reuses the first one's
connection, a connection the subscriber closed is not reused, cookies are not kept, and
neither a TLS name nor a forked process shares another's connections."""

from __future__ import annotations

import multiprocessing

import httpx

from falbridge.worker.notify import manage
from falbridge.worker.notify.connections import client_for
from falbridge.worker.notify.deliver import Outcome, deliver
from tests.plugins.subscriber import Answer
from tests.worker.notify.helpers import complete, deliveries, new_job

TARGET = httpx.URL("https://127.0.0.1:8443/hooks")


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


def test_each_address_tls_name_and_timeout_has_its_own_client():
    shared = client_for(TARGET, "hooks.example.com", 5.0)
    assert client_for(TARGET, "hooks.example.com", 5.0) is shared
    others = {
        id(client_for(TARGET, "other.example.com", 5.0)),
        id(client_for(TARGET.copy_with(host="127.0.0.2"), "hooks.example.com", 5.0)),
        id(client_for(TARGET.copy_with(port=9443), "hooks.example.com", 5.0)),
        id(client_for(TARGET, "hooks.example.com", 2.0)),
    }
    assert id(shared) not in others and len(others) == 4


def _client_in_child(answer) -> None:
    answer.send(id(client_for(TARGET, "hooks.example.com", 5.0)))


def test_a_forked_process_does_not_use_its_parents_connections():
    parent = client_for(TARGET, "hooks.example.com", 5.0)
    receiving, sending = multiprocessing.Pipe(duplex=False)
    child = multiprocessing.get_context("fork").Process(target=_client_in_child, args=(sending,))
    child.start()
    child.join(timeout=30)
    # The child's memory is a copy of the parent's: the same object would have the same id.
    assert child.exitcode == 0 and receiving.recv() != id(parent)
