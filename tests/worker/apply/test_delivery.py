"""Applying one stored, verified delivery to its job (worker/apply/delivery.py), straight
against the database: each test stores the delivery the receiver would have stored, applies
it, and reads back the job, its history and the delivery row."""

from __future__ import annotations

import json
import uuid

import pytest
from sqlalchemy import select

from falbridge.models.db import transaction
from falbridge.models.inbox import store_rejected, store_verified
from falbridge.models.jobs import create_job
from falbridge.models.tables import Job, JobEvent, ResultFile, WebhookDelivery
from falbridge.worker.apply.delivery import Applied, DeliveryOutcome, apply_delivery
from falbridge.worker.followup import FollowUp, Work
from falbridge.worker.webhook_url import webhook_url
from tests.plugins.rows import row

IMAGE = {"url": "https://cdn.example/mask.png", "content_type": "image/png", "file_size": 7}
DONE = {"request_id": "req-1", "status": "OK", "payload": {"image": IMAGE}}


@pytest.fixture(autouse=True)
def secret_key(db_url, monkeypatch):
    monkeypatch.setenv("FALBRIDGE_SECRET_KEY", "delivery-test-secret-key-" + "k" * 24)


def _job(status: str = "submitted", request_id: str | None = "req-1", **fields) -> uuid.UUID:
    with transaction() as s:
        job, _ = create_job(s, "fal-ai/evf-sam", {"prompt": "cat"})
        job.status, job.request_id = status, request_id
        for name, value in fields.items():
            setattr(job, name, value)
        return job.id


def _deliver(callback: dict | bytes, **headers) -> int:
    body = callback if isinstance(callback, bytes) else json.dumps(callback).encode()
    request_id = "req-1" if isinstance(callback, bytes) else callback["request_id"]
    with transaction() as s:
        return store_verified(s, request_id=request_id, body=body, headers=headers).delivery_id


def _claiming(job_id: uuid.UUID, token: str | None = None) -> dict[str, object]:
    """The headers the receiver stores for a callback that came to our URL for `job_id`."""
    if token is None:
        token = webhook_url(job_id).rsplit("token=", 1)[1]
    return {"query_job_id": str(job_id), "query_token": token}


def _history(job_id: uuid.UUID) -> list[tuple[str | None, str, str, dict | None]]:
    with transaction() as s:
        events = s.scalars(select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.id))
        return [(e.from_status, e.to_status, e.source, e.detail) for e in events]


def test_applying_the_same_delivery_twice_is_a_no_op_the_second_time():
    job_id = _job()
    delivery_id = _deliver(DONE)
    assert apply_delivery(delivery_id) == Applied(DeliveryOutcome.APPLIED)
    first = row(WebhookDelivery, delivery_id)
    assert apply_delivery(delivery_id) == Applied(DeliveryOutcome.SKIPPED)
    again = row(WebhookDelivery, delivery_id)
    assert (again.outcome, again.processed_at) == ("applied", first.processed_at)
    job = row(Job, job_id)
    assert job.status == "completed" and job.webhook_count == 1
    assert [e[1] for e in _history(job_id)] == ["pending", "completed"]


def test_a_callback_without_gateway_request_id_keeps_the_one_recorded_at_submit():
    kept = _job(gateway_request_id="gw-from-submit")
    apply_delivery(_deliver(DONE))
    assert row(Job, kept).gateway_request_id == "gw-from-submit"
    replaced = _job(request_id="req-2", gateway_request_id="gw-from-submit")
    apply_delivery(_deliver({**DONE, "request_id": "req-2", "gateway_request_id": "gw-from-callback"}))
    assert row(Job, replaced).gateway_request_id == "gw-from-callback"


def test_a_payload_error_callback_leaves_the_job_waiting_for_its_result():
    job_id = _job()
    delivery_id = _deliver(
        {"request_id": "req-1", "status": "OK", "payload": None, "payload_error": "too big"}
    )
    applied = apply_delivery(delivery_id)
    assert applied == Applied(
        DeliveryOutcome.RESULT_FETCH_NEEDED, (FollowUp(Work.FETCH_RESULT, str(job_id)),)
    )
    job = row(Job, job_id)
    assert (job.status, job.result_pending, job.result, job.webhook_count) == ("submitted", True, None, 1)
    delivery = row(WebhookDelivery, delivery_id)
    assert delivery.outcome == "result_fetch_needed" and delivery.processed_at is not None
    assert delivery.job_id == job_id


def test_a_completion_stores_the_result_and_its_files_with_the_delivery_in_the_history():
    job_id = _job(result_pending=True)
    delivery_id = _deliver(DONE)
    apply_delivery(delivery_id)
    job = row(Job, job_id)
    assert (job.status, job.result, job.result_pending) == ("completed", DONE["payload"], False)
    assert _history(job_id)[-1] == ("submitted", "completed", "webhook", {"delivery_id": delivery_id})
    with transaction() as s:
        [stored] = s.scalars(select(ResultFile).where(ResultFile.job_id == job_id))
        assert (stored.path, stored.url, stored.file_size) == ("image", IMAGE["url"], 7)
    delivery = row(WebhookDelivery, delivery_id)
    assert (delivery.outcome, delivery.job_id, delivery.processing_error) == ("applied", job_id, None)


def test_an_error_callback_fails_the_job_with_fals_detail():
    job_id = _job()
    detail = [{"loc": ["body", "image_url"], "msg": "could not download", "type": "file_download_error"}]
    delivery_id = _deliver(
        {
            "request_id": "req-1",
            "status": "ERROR",
            "error": "Invalid status code: 422",
            "payload": {"detail": detail},
        }
    )
    assert apply_delivery(delivery_id).outcome is DeliveryOutcome.APPLIED
    job = row(Job, job_id)
    assert (job.status, job.error, job.error_type, job.error_detail) == (
        "failed",
        "Invalid status code: 422",
        "file_download_error",
        detail,
    )
    assert _history(job_id)[-1] == ("submitted", "failed", "webhook", {"delivery_id": delivery_id})


def test_an_error_callback_without_a_message_still_says_fal_reported_it():
    job_id = _job()
    apply_delivery(_deliver({"request_id": "req-1", "status": "ERROR", "payload": None}))
    job = row(Job, job_id)
    assert (job.status, job.error, job.error_type) == ("failed", "fal reported an error", None)


def test_a_callback_for_a_finished_job_is_counted_but_changes_nothing():
    job_id = _job()
    apply_delivery(_deliver(DONE))
    late = _deliver({"request_id": "req-1", "status": "ERROR", "error": "late", "payload": None})
    assert apply_delivery(late) == Applied(DeliveryOutcome.DUPLICATE)
    job = row(Job, job_id)
    assert (job.status, job.error, job.webhook_count) == ("completed", None, 2)
    assert row(WebhookDelivery, late).outcome == "duplicate"


def test_deliveries_that_are_not_there_or_not_verified_are_skipped():
    job_id = _job()
    stored = _deliver(DONE)
    for missing in (stored - 1, stored + 1):  # one id either side of a stored delivery
        assert apply_delivery(missing) == Applied(DeliveryOutcome.SKIPPED)
    assert row(WebhookDelivery, stored).processed_at is None and row(Job, job_id).status == "submitted"
    with transaction() as s:
        rejected = store_rejected(
            s, request_id="req-1", code="bad_signature", reason="signature", headers={}, body=b"{}"
        )
        s.get(WebhookDelivery, rejected).processed_at = None  # even if it were never marked
    assert apply_delivery(rejected) == Applied(DeliveryOutcome.SKIPPED)
    assert row(WebhookDelivery, rejected).outcome == "rejected"
    assert row(Job, job_id).webhook_count == 0


def test_an_unparseable_body_is_recorded_as_such():
    delivery_id = _deliver(b"not json")
    assert apply_delivery(delivery_id) == Applied(DeliveryOutcome.UNPARSEABLE)
    delivery = row(WebhookDelivery, delivery_id)
    assert delivery.outcome == "unparseable" and delivery.processed_at is not None
    assert "not strict JSON" in delivery.processing_error


def test_a_callback_that_beats_the_submit_response_binds_by_our_url():
    job_id = _job(status="pending", request_id=None)
    delivery_id = _deliver(DONE, **_claiming(job_id))
    assert apply_delivery(delivery_id).outcome is DeliveryOutcome.APPLIED
    job = row(Job, job_id)
    assert (job.status, job.request_id, job.webhook_count) == ("completed", "req-1", 1)
    assert row(WebhookDelivery, delivery_id).job_id == job_id


@pytest.mark.parametrize(
    "claim, why",
    [
        ("no claim", "no job has this request id, and the URL names none"),
        ("not a job id", "no job has this request id, and the URL names none"),
        ("no token", "comes without a valid token"),
        ("a number as token", "comes without a valid token"),
        ("another job's token", "comes without a valid token"),
        ("no such job", "does not exist"),
    ],
)
def test_a_callback_no_job_answers_to_is_unknown_and_says_why(claim, why):
    victim = _job(status="pending", request_id=None)
    stranger = uuid.uuid4()
    headers = {
        "no claim": {},
        "not a job id": {"query_job_id": "not-a-uuid", "query_token": "x"},
        "no token": {"query_job_id": str(victim)},
        "a number as token": {"query_job_id": str(victim), "query_token": 12345},
        "another job's token": _claiming(victim, token=_claiming(stranger)["query_token"]),
        "no such job": _claiming(stranger),
    }[claim]
    delivery_id = _deliver({**DONE, "request_id": "req-foreign"}, **headers)
    assert apply_delivery(delivery_id) == Applied(DeliveryOutcome.UNKNOWN_JOB)
    delivery = row(WebhookDelivery, delivery_id)
    assert why in delivery.processing_error and delivery.job_id is None
    assert (delivery.outcome, delivery.processed_at is not None) == ("unknown_job", True)
    job = row(Job, victim)
    assert (job.status, job.request_id, job.webhook_count) == ("pending", None, 0)


@pytest.mark.parametrize("mine, theirs", [("req-a", "req-b"), ("req-b", "req-a")])
def test_a_callback_for_another_request_never_touches_a_bound_job(mine, theirs):
    job_id = _job(request_id=mine, gateway_request_id="gw-mine")
    callback = {**DONE, "request_id": theirs, "gateway_request_id": "gw-other"}
    delivery_id = _deliver(callback, **_claiming(job_id))
    assert apply_delivery(delivery_id) == Applied(DeliveryOutcome.REQUEST_ID_MISMATCH)
    job = row(Job, job_id)
    assert (job.status, job.request_id, job.gateway_request_id, job.webhook_count) == (
        "submitted",
        mine,
        "gw-mine",
        0,
    )
    assert row(WebhookDelivery, delivery_id).processing_error == f"request id {theirs} is not this job's"
