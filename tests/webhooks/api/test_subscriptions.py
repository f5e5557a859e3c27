"""The subscriptions API through the real Flask app, on each database backend, with a real
subscriber over HTTP for what gets delivered (no broker: deliveries are sent by `deliver`
calls, as a worker would)."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from falbridge.models.db import transaction
from falbridge.models.tables import Subscription
from falbridge.webhooks.app import create_app
from falbridge.worker.notify.deliver import deliver
from tests.plugins.pipeline import API_HEADERS, TEST_API_TOKEN
from tests.worker.notify.helpers import complete, deliveries, new_job, verified


@pytest.fixture
def api(notifying, monkeypatch):
    monkeypatch.setenv("FALBRIDGE_API_TOKENS", TEST_API_TOKEN)
    client = create_app().test_client()

    def call(method: str, path: str, **kwargs):
        return client.open(path, method=method, headers=API_HEADERS, **kwargs)

    return call


def _count() -> int:
    with transaction() as s:
        return s.scalar(select(func.count()).select_from(Subscription))


def test_create_shows_the_secret_once(api, notifying):
    made = api("POST", "/api/subscriptions", json={"url": notifying.url, "events": ["job.completed"]})
    assert made.status_code == 201 and made.headers["Location"] == f"/api/subscriptions/{made.json['id']}"
    body = made.json
    assert (
        body["secret"].startswith("whsec_")
        and body["enabled"] is True
        and body["events"] == ["job.completed"]
    )
    shown = api("GET", f"/api/subscriptions/{body['id']}").json
    listed = api("GET", "/api/subscriptions").json["subscriptions"]
    assert "secret" not in shown and all("secret" not in s for s in listed) and len(listed) == 1
    with transaction() as s:  # stored encrypted, never in clear
        stored = s.get(Subscription, __import__("uuid").UUID(body["id"]))
        assert body["secret"].encode() not in stored.secret_encrypted


@pytest.mark.parametrize(
    "payload,field",
    [
        ({"url": "ftp://example.com/x", "events": ["job.completed"]}, "url"),
        ({"url": "http://10.1.2.3/hook", "events": ["job.completed"]}, "url"),
        ({"url": "http://169.254.169.254/", "events": ["job.completed"]}, "url"),
        ({"events": ["job.completed"]}, "url"),
        ({"url": "https://example.com/h", "events": ["job.exploded"]}, "events"),
        ({"url": "https://example.com/h", "events": []}, "events"),
        ({"url": "https://example.com/h", "events": ["job.failed"] * 17}, "events"),  # maxItems 16
        ({"url": "https://example.com/h", "events": "job.completed"}, "events"),
        ({"url": "https://example.com/h", "events": ["job.completed"], "colour": "red"}, "colour"),
        ({"url": "https://example.com/h", "events": ["job.completed"], "description": 5}, "description"),
    ],
)
def test_bad_input_is_400_naming_the_field_and_stores_nothing(api, payload, field):
    answer = api("POST", "/api/subscriptions", json=payload)
    assert answer.status_code == 400, answer.json
    assert [d["field"] for d in answer.json["error"]["details"]] == [field]
    assert _count() == 0


def test_same_url_and_events_twice_is_409(api, notifying):
    first = api(
        "POST", "/api/subscriptions", json={"url": notifying.url, "events": ["job.failed", "job.completed"]}
    )
    again = api(
        "POST", "/api/subscriptions", json={"url": notifying.url, "events": ["job.completed", "job.failed"]}
    )
    assert again.status_code == 409 and again.json["error"]["details"]["subscription_id"] == first.json["id"]
    other = api("POST", "/api/subscriptions", json={"url": notifying.url, "events": ["job.completed"]})
    assert other.status_code == 201
    clash = api(
        "PATCH", f"/api/subscriptions/{other.json['id']}", json={"events": ["job.failed", "job.completed"]}
    )
    assert clash.status_code == 409 and _count() == 2


def test_update_disable_enable_and_delete(api, notifying):
    made = api("POST", "/api/subscriptions", json={"url": notifying.url, "events": ["job.completed"]}).json
    path = f"/api/subscriptions/{made['id']}"
    changed = api(
        "PATCH", path, json={"enabled": False, "description": "paused", "events": ["job.status_changed"]}
    )
    assert changed.status_code == 200
    assert changed.json["enabled"] is False and changed.json["description"] == "paused"
    assert changed.json["events"] == ["job.status_changed"]
    assert api("PATCH", path, json={"url": "http://10.0.0.9/x"}).status_code == 400
    assert api("PATCH", path, json={"enabled": None}).status_code == 400
    assert api("PATCH", path, json={"enabled": True}).json["enabled"] is True
    assert api("DELETE", path).status_code == 204
    assert api("GET", path).status_code == 404 and api("DELETE", path).status_code == 404
    assert api("GET", "/api/subscriptions/not-a-uuid").status_code == 404


def test_rotate_secret_then_both_sign(api, notifying):
    made = api("POST", "/api/subscriptions", json={"url": notifying.url, "events": ["job.completed"]}).json
    rotated = api("POST", f"/api/subscriptions/{made['id']}/rotate-secret").json
    assert rotated["secret"] != made["secret"] and rotated["previous_secret_expires_at"]
    job = new_job()
    complete(job.id)
    [delivery] = deliveries()
    deliver(delivery.id)
    verified(notifying.wait_for(1)[0], made["secret"], rotated["secret"])


def test_deliveries_dead_letters_and_replays(api, notifying, monkeypatch):
    monkeypatch.setenv("FALBRIDGE_NOTIFY_SCHEDULE_SCALE", "0.000001")
    made = api("POST", "/api/subscriptions", json={"url": notifying.url, "events": ["job.completed"]}).json
    notifying.answer(*[500] * 8)
    job = new_job()
    complete(job.id)
    [delivery] = deliveries()
    while deliveries()[0].status != "exhausted":
        deliver(delivery.id)
    overview = api("GET", "/api/event-deliveries?status=exhausted").json
    assert overview["counts"]["exhausted"] == 1 and len(overview["deliveries"]) == 1
    log = api("GET", f"/api/subscriptions/{made['id']}/deliveries").json["deliveries"]
    assert [a["status_code"] for a in log[0]["attempt_log"]] == [500] * 8
    replayed = api("POST", f"/api/events/evt_{delivery.event_id}/replay")
    assert replayed.status_code == 202 and replayed.json["deliveries"] == [delivery.id]
    assert deliver(delivery.id).outcome == "delivered"
    body = verified(notifying.wait_for(9)[-1], made["secret"])
    assert body["data"]["id"] == str(job.id)
    again = api("POST", f"/api/subscriptions/{made['id']}/replay", json={"since": "2000-01-01T00:00:00Z"})
    assert again.status_code == 202 and again.json["replayed"] == 1
    assert api("GET", "/api/event-deliveries").json["counts"]["pending"] == 1
    assert api("POST", "/api/events/evt_999999/replay").status_code == 404
    assert (
        api("POST", f"/api/subscriptions/{made['id']}/replay", json={"since": "yesterday"}).status_code == 400
    )
    assert api("GET", "/api/event-deliveries?status=lost").status_code == 400


def test_the_routes_need_the_token(notifying, monkeypatch):
    monkeypatch.setenv("FALBRIDGE_API_TOKENS", TEST_API_TOKEN)
    client = create_app().test_client()
    assert client.get("/api/subscriptions").status_code == 401
    assert (
        client.post(
            "/api/subscriptions", json={"url": notifying.url, "events": ["job.completed"]}
        ).status_code
        == 401
    )
    assert client.post("/api/events/evt_1/replay").status_code == 401
