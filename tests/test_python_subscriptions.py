"""Outgoing webhooks from Python: falbridge.create_subscription & co in process, and the
same calls on falbridge.Client over HTTP, with the same answers and exceptions."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

import falbridge
from falbridge.webhooks.app import create_app
from falbridge.worker.notify.deliver import deliver
from tests.plugins.pipeline import TEST_API_TOKEN, ServerThread
from tests.worker.notify.helpers import complete, deliveries, new_job, verified


@pytest.fixture(params=["in process", "client"])
def api(request, notifying, monkeypatch):
    if request.param == "in process":
        yield falbridge
        return
    monkeypatch.setenv("FALBRIDGE_API_TOKENS", TEST_API_TOKEN)
    server = ServerThread(create_app()).start()
    with falbridge.Client(server.url, TEST_API_TOKEN) as client:
        yield client
    server.stop()


def test_the_whole_life_of_a_subscription(api, notifying):
    made = api.create_subscription(notifying.url, ["job.completed"], "orders")
    assert made["secret"].startswith("whsec_") and made["description"] == "orders"
    assert [s["id"] for s in api.subscriptions()] == [made["id"]]
    assert "secret" not in api.get_subscription(made["id"])
    assert api.update_subscription(made["id"], enabled=False)["enabled"] is False
    assert api.update_subscription(made["id"], enabled=True)["enabled"] is True
    rotated = api.rotate_secret(made["id"])
    job = new_job()
    complete(job.id)
    [delivery] = deliveries()
    deliver(delivery.id)
    verified(notifying.wait_for(1)[0], made["secret"], rotated["secret"])
    assert api.replay_event(f"evt_{delivery.event_id}") == [delivery.id]
    assert api.replay_subscription(made["id"], datetime(2000, 1, 1, tzinfo=UTC)) == 1
    assert api.event_deliveries(made["id"])[0]["status"] == "pending"
    assert api.event_deliveries(status="exhausted") == []
    api.delete_subscription(made["id"])
    with pytest.raises(falbridge.SubscriptionNotFound):
        api.get_subscription(made["id"])


def test_refusals_are_the_same_exceptions(api, notifying):
    with pytest.raises(falbridge.InvalidInput) as bad:
        api.create_subscription("http://10.1.1.1/x", ["job.completed"])
    assert [e["field"] for e in bad.value.errors] == ["url"]
    with pytest.raises(falbridge.InvalidInput) as unknown:
        api.create_subscription(notifying.url, ["job.exploded"])
    assert [e["field"] for e in unknown.value.errors] == ["events"]
    first = api.create_subscription(notifying.url, ["job.completed"])
    with pytest.raises(falbridge.DuplicateSubscription) as twice:
        api.create_subscription(notifying.url, ["job.completed"])
    assert twice.value.subscription_id == first["id"]
    with pytest.raises(falbridge.EventNotFound):
        api.replay_event("evt_999999")
    with pytest.raises(falbridge.SubscriptionNotFound):
        api.replay_subscription("7d8f2a8e-0000-4000-8000-000000000000", datetime(2000, 1, 1, tzinfo=UTC))
