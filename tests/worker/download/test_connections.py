"""The shared, kept-alive clients (worker.download.connections): one per checked address,
port, TLS name, timeout and trust, and none inherited by a forked process. Their use is
tested where they are used: tests/worker/download/test_safe_get.py (downloads) and
tests/worker/notify/test_connections.py (webhooks)."""

from __future__ import annotations

import multiprocessing
import ssl

import httpx

from falbridge.worker.download.connections import client_for

TARGET = httpx.URL("https://127.0.0.1:8443/hooks")
FIVE = httpx.Timeout(5.0)


def test_each_address_tls_name_timeout_and_trust_has_its_own_client():
    shared = client_for(TARGET, "hooks.example.com", FIVE)
    assert client_for(TARGET, "hooks.example.com", FIVE) is shared
    others = {
        id(client_for(TARGET, "other.example.com", FIVE)),
        id(client_for(TARGET.copy_with(host="127.0.0.2"), "hooks.example.com", FIVE)),
        id(client_for(TARGET.copy_with(port=9443), "hooks.example.com", FIVE)),
        id(client_for(TARGET, "hooks.example.com", httpx.Timeout(2.0))),
        id(client_for(TARGET, "hooks.example.com", FIVE, ssl.create_default_context())),
    }
    assert id(shared) not in others and len(others) == 5


def _client_in_child(answer) -> None:
    answer.send(id(client_for(TARGET, "hooks.example.com", FIVE)))


def test_a_forked_process_does_not_use_its_parents_connections():
    parent = client_for(TARGET, "hooks.example.com", FIVE)
    receiving, sending = multiprocessing.Pipe(duplex=False)
    child = multiprocessing.get_context("fork").Process(target=_client_in_child, args=(sending,))
    child.start()
    child.join(timeout=30)
    # The child's memory is a copy of the parent's: the same object would have the same id.
    assert child.exitcode == 0 and receiving.recv() != id(parent)
