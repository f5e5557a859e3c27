"""The whole pipeline over real HTTP: our API -> Celery -> sandbox (as fal) -> signed
callback -> receiver -> Celery -> database. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import json
import time

import httpx
from sqlalchemy import func, select

from falbridge.models.db import transaction
from falbridge.models.tables import Job, JobEvent, ResultFile, WebhookDelivery
from falbridge.worker.actions import submit
from tests.plugins.waiting import poll_until

PNG_1x1 = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)


def _cat_uri() -> str:
    from falbridge.demo import CAT

    return "data:image/png;base64," + base64.b64encode(CAT.read_bytes()).decode()


def _count(model, *where) -> int:
    with transaction() as s:
        return s.scalar(select(func.count()).select_from(model).where(*where))


def test_both_seed_endpoints_complete_with_their_files(pipeline):
    evf, _ = submit("fal-ai/evf-sam", {"prompt": "Cat in the middle of the image", "image_url": _cat_uri()})
    florence, _ = submit("fal-ai/florence-2-large/region-proposal", {"image_url": _cat_uri()})
    pipeline.wait_terminal(evf.id, florence.id)
    # fal's callback may finish a job before the submit's own answer (its URLs) is written.
    evf, florence = poll_until(
        lambda: pipeline.wait_terminal(evf.id, florence.id), lambda jobs: all(j.status_url for j in jobs)
    )

    assert evf.status == "completed", evf.error
    [mask] = evf.files
    assert (mask.path, mask.content_type) == ("image", "image/png")
    body = httpx.get(mask.url).content
    assert body.startswith(b"\x89PNG") and mask.file_size == len(body)
    assert evf.request_id and evf.status_url and "/requests/" in evf.status_url

    assert florence.status == "completed", florence.error
    assert florence.result["results"]["bboxes"]
    assert "region-proposal" not in florence.status_url  # fal's sub-path rule, URLs reused verbatim
    [image] = florence.files
    assert image.path == "image" and image.width == 256 and image.height == 256

    events = [(e.from_status, e.to_status, e.source) for e in evf.events]
    assert events[0] == (None, "pending", "api")
    assert events[-1][1:] == ("completed", "webhook")


def test_pass_through_endpoint(pipeline):
    job, _ = submit("fal-ai/some/other-model", {"anything": [1, 2, 3]})
    [job] = pipeline.wait_terminal(job.id)
    assert job.status == "completed"
    assert job.result["echo"] == {"anything": [1, 2, 3]}
    assert job.files == []


def test_error_callback_fails_the_job_with_fal_detail(pipeline):
    job, _ = submit("fal-ai/evf-sam", {"prompt": "cat", "image_url": "http://127.0.0.1:9/nope.png"})
    [job] = pipeline.wait_terminal(job.id)
    assert job.status == "failed"
    assert job.error.startswith("Invalid status code: 422")
    assert job.error_type == "file_download_error"
    assert job.error_detail[0]["loc"] == ["body", "image_url"]
    assert job.result is None and job.files == []


def test_duplicated_callbacks_leave_one_result(pipeline):
    pipeline.sandbox.set_faults(duplicate=1.0, duplicate_copies=3)
    jobs = [submit("fal-ai/evf-sam", {"prompt": "cat", "image_url": _cat_uri()})[0] for _ in range(5)]
    done = pipeline.wait_terminal(*(j.id for j in jobs))
    pipeline.sandbox.wait_idle(timeout=15)
    for job in done:
        assert job.status == "completed"
        assert _count(ResultFile, ResultFile.job_id == job.id) == 1
        assert _count(JobEvent, JobEvent.job_id == job.id, JobEvent.to_status == "completed") == 1
    truth = pipeline.sandbox.ground_truth()
    sent = sum(len([d for d in r["deliveries"] if d["http_status"] == 200]) for r in truth["requests"])
    assert sent == 20  # fal really did deliver each callback four times
    with transaction() as s:
        rows = s.execute(select(WebhookDelivery.redeliveries, WebhookDelivery.outcome)).all()
    assert sorted(r.redeliveries for r in rows) == [3] * 5  # one stored row per callback
    assert {r.outcome for r in rows} == {"applied"}


def test_callback_that_beats_the_submit_response_completes_its_job(pipeline):
    pipeline.sandbox.set_faults(webhook_before_response=1.0)
    job, _ = submit("fal-ai/florence-2-large/region-proposal", {"image_url": _cat_uri()})
    [job] = pipeline.wait_terminal(job.id)
    assert job.status == "completed"
    truth = pipeline.sandbox.ground_truth()["requests"]
    assert [r["request_id"] for r in truth] == [job.request_id]

    # The submit response still arrives afterwards and fills in fal's URLs.
    def load() -> Job:
        with transaction() as s:
            return s.get(Job, job.id)

    loaded = poll_until(load, lambda j: j.status_url and j.submitted_at, timeout=10)
    assert loaded.status_url and loaded.status == "completed"


def test_bad_signature_changes_nothing(pipeline):
    pipeline.sandbox.set_faults(bad_signature=1.0)
    job, _ = submit("fal-ai/evf-sam", {"prompt": "cat", "image_url": _cat_uri()})
    pipeline.wait_status(job.id, "submitted")
    pipeline.sandbox.wait_idle(timeout=20)  # every delivery attempt made and refused
    with transaction() as s:
        loaded = s.get(Job, job.id)
        rejected = s.scalars(select(WebhookDelivery)).all()
    assert loaded.status == "submitted" and loaded.result is None
    assert rejected and all(not d.verified and "signature" in d.rejection_reason for d in rejected)
    [truth] = pipeline.sandbox.ground_truth()["requests"]
    assert {d["http_status"] for d in truth["deliveries"]} == {401}


def test_forged_callback_is_rejected_with_a_json_reason(pipeline):
    job, _ = submit("fal-ai/evf-sam", {"prompt": "cat", "image_url": _cat_uri()})
    [job] = pipeline.wait_terminal(job.id)
    forged = json.dumps({"request_id": job.request_id, "status": "OK", "payload": {"evil": 1}}).encode()
    response = httpx.post(
        f"{pipeline.receiver_url}/webhooks/fal?job={job.id}",
        content=forged,
        headers={
            "X-Fal-Webhook-Request-Id": job.request_id,
            "X-Fal-Webhook-User-Id": "sandbox-user",
            "X-Fal-Webhook-Timestamp": str(int(time.time())),
            "X-Fal-Webhook-Signature": "ab" * 64,
        },
    )
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_signature"
    with transaction() as s:
        assert s.get(Job, job.id).result != {"evil": 1}


def test_payload_error_result_is_fetched_from_the_queue(pipeline):
    pipeline.sandbox.set_faults(payload_error=1.0)
    job, _ = submit("fal-ai/evf-sam", {"prompt": "cat", "image_url": _cat_uri()})
    [job] = pipeline.wait_terminal(job.id)
    assert job.status == "completed" and job.result_pending is False
    assert job.files[0].path == "image"
    assert job.events[-1].source == "poll"


def test_resubmitting_an_external_id_returns_the_same_job(pipeline):
    first, created = submit("fal-ai/some/model", {"n": 1}, external_id="order-7")
    again, created_again = submit("fal-ai/some/model", {"n": 1}, external_id="order-7")
    assert created and not created_again and first.id == again.id
    pipeline.wait_terminal(first.id)
    pipeline.sandbox.wait_idle(timeout=10)
    assert len(pipeline.sandbox.ground_truth()["requests"]) == 1
