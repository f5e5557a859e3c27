"""fal's stored callbacks from Python, in process (falbridge.list_deliveries, get_delivery,
reapply_delivery) and over HTTP (the same falbridge.Client methods), against the real
pipeline: the sandbox as fal calls the real receiver back over HTTP. The same calls, the
same values (equal to the HTTP API's JSON), the same exceptions."""

from __future__ import annotations

import dataclasses

import httpx
import pytest

import falbridge
from tests.plugins.pipeline import API_HEADERS
from tests.plugins.waiting import poll_until

SOME = "fal-ai/some/model"


@pytest.fixture
def receiver_stores_only(monkeypatch):
    """The receiver stores and acknowledges fal's callbacks but enqueues nothing (as when
    Redis is down at that moment): each stays unprocessed until someone applies it."""
    monkeypatch.setattr("falbridge.webhooks.receive.view.wake_drainer", lambda *args: False)


def _as_the_api_shows_it(pipeline, path: str) -> dict:
    return httpx.get(f"{pipeline.receiver_url}{path}", headers=API_HEADERS).json()


def test_an_unprocessed_callback_is_listed_shown_and_applied_once(api, pipeline, receiver_stores_only):
    job = api.submit(SOME, {"n": 1})
    submitted = pipeline.wait_status(job.id, "submitted")
    pipeline.sandbox.wait_idle(timeout=15)  # fal has called back, and was answered 200
    [truth] = pipeline.sandbox.ground_truth()["requests"]
    assert [d["http_status"] for d in truth["deliveries"]] == [200]

    page = api.list_deliveries(request_id=submitted.request_id, processed=False)
    [waiting] = page.deliveries
    assert isinstance(waiting, falbridge.DeliverySummary) and page.next_cursor is None
    assert (waiting.processed, waiting.outcome, waiting.job_id, waiting.verified) == (False, None, None, True)
    assert page.to_json() == _as_the_api_shows_it(
        pipeline, f"/api/deliveries?request_id={submitted.request_id}&processed=false"
    )

    shown = api.get_delivery(waiting.id)
    assert shown.payload_status == "OK" and shown.body["request_id"] == submitted.request_id
    assert shown.to_json() == _as_the_api_shows_it(pipeline, f"/api/deliveries/{waiting.id}")
    assert api.get(job.id).status == "submitted"  # nobody applied it

    reapplied = api.reapply_delivery(waiting.id)
    assert isinstance(reapplied, falbridge.Reapplied) and not reapplied.already_processed
    assert reapplied.outcome == "applied" and reapplied.delivery.job_id == job.id
    done = api.get(job.id)
    assert done.status == "completed" and done.webhook_count == 1
    assert [e.detail for e in done.events if e.to_status == "completed"] == [{"delivery_id": waiting.id}]

    again = api.reapply_delivery(waiting.id)
    assert again.already_processed and again.delivery == reapplied.delivery
    assert api.get(job.id) == done  # nothing changed
    assert [d.id for d in api.list_deliveries(job_id=job.id).deliveries] == [waiting.id]
    assert api.list_deliveries(request_id=submitted.request_id, processed=False).deliveries == ()


def test_callbacks_the_workers_applied_are_already_processed(api, pipeline):
    job = api.wait(api.submit(SOME, {"n": 2}).id, timeout=30)
    [delivery] = poll_until(
        lambda: api.list_deliveries(job_id=job.id).deliveries,
        lambda found: len(found) == 1,
        10,
        lambda found: f"deliveries of job {job.id}: {found}",
    )
    assert delivery.outcome == "applied" and delivery.processed
    answer = api.reapply_delivery(delivery.id)
    assert answer.outcome == "already_processed" and answer.delivery.processed_at == delivery.processed_at
    assert api.get(job.id) == job


def test_wrong_requests_raise_the_same_exceptions(api, pipeline):
    with pytest.raises(falbridge.DeliveryNotFound, match="no delivery with id '987654'"):
        api.get_delivery(987654)
    with pytest.raises(falbridge.DeliveryNotFound):
        api.reapply_delivery(987654)
    for bad in (
        {"job_id": "abcdef12"},
        {"outcome": "won"},
        {"limit": 0},
        {"cursor": "not-a-cursor"},
    ):
        with pytest.raises(falbridge.InvalidInput) as raised:
            api.list_deliveries(**bad)
        assert [e["field"] for e in raised.value.errors] == list(bad)
    with pytest.raises(falbridge.InvalidInput) as raised:
        api.get_delivery(0)
    assert [e["field"] for e in raised.value.errors] == ["delivery_id"]


def test_delivery_values_are_immutable(api, pipeline, receiver_stores_only):
    job = api.submit(SOME, {"n": 3})
    request_id = pipeline.wait_status(job.id, "submitted").request_id
    pipeline.sandbox.wait_idle(timeout=15)
    [summary] = api.list_deliveries(request_id=request_id).deliveries
    delivery = api.get_delivery(summary.id)
    with pytest.raises(dataclasses.FrozenInstanceError):
        delivery.outcome = "applied"  # type: ignore[misc]
    with pytest.raises(TypeError):
        delivery.body["status"] = "ERROR"
    assert repr(summary) == f"<DeliverySummary {summary.id} {request_id} unprocessed>"
