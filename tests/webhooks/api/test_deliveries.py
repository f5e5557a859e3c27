"""The stored deliveries under /api (list, show, re-apply) through the real Flask app, on
each database backend; two re-applies racing over real HTTP from two threads."""

from __future__ import annotations

import json
import threading
import uuid

import httpx
import pytest
from sqlalchemy import func, select

from falbridge.models.db import transaction
from falbridge.models.inbox import store_rejected, store_verified
from falbridge.models.jobs import create_job
from falbridge.models.tables import Job, JobEvent, ResultFile, WebhookDelivery
from falbridge.webhooks.app import create_app
from falbridge.worker.followup import Work
from tests.plugins.pipeline import API_HEADERS, TEST_API_TOKEN, ServerThread

# Stored with every delivery here: none of it may ever be shown.
SECRET_HEADERS = {
    "X-Fal-Webhook-Signature": "SENTINEL-SIGNATURE-0f9e8d",
    "query_token": "SENTINEL-URL-TOKEN-7a6b5c",
    "query_job_id": None,
}


@pytest.fixture
def app(db_url, redis_url, monkeypatch, tmp_path):
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("FALBRIDGE_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("FALBRIDGE_API_TOKENS", TEST_API_TOKEN)
    return create_app()


@pytest.fixture
def client(app):
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = API_HEADERS["Authorization"]
    return client


@pytest.fixture
def enqueued(monkeypatch):
    """What re-applying asks the workers to do next (nothing reaches Redis)."""
    sent: list = []
    monkeypatch.setattr("falbridge.worker.actions.enqueue_follow_ups", lambda f: sent.extend(f))
    return sent


def callback(request_id: str, *, ok: bool = True, payload=None, **extra) -> bytes:
    body = {"request_id": request_id, "status": "OK" if ok else "ERROR", "payload": payload, **extra}
    return json.dumps(body).encode()


def submitted_job(request_id: str) -> uuid.UUID:
    with transaction() as s:
        job, _ = create_job(s, "fal-ai/some/model", {"n": 1})
        job.request_id, job.status = request_id, "submitted"
        return job.id


def stored(request_id: str, body: bytes | None = None) -> int:
    with transaction() as s:
        body = body if body is not None else callback(request_id, payload={"echo": 1})
        return store_verified(s, request_id=request_id, body=body, headers=dict(SECRET_HEADERS)).delivery_id


def processed_count(job_id) -> tuple[int, int]:
    """(terminal events, webhook_count) of a job."""
    with transaction() as s:
        terminal = s.scalar(
            select(func.count())
            .select_from(JobEvent)
            .where(JobEvent.job_id == job_id, JobEvent.to_status.in_(["completed", "failed"]))
        )
        return terminal, s.get(Job, job_id).webhook_count


def error_of(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)
    error = response.get_json()["error"]
    assert error["code"] == code and error["message"]
    return error


def fields(error) -> set[str]:
    return {d["field"] for d in error["details"]}


def no_secrets(response) -> None:
    text = response.get_data(as_text=True)
    assert all(value not in text for value in SECRET_HEADERS.values() if value)


# -- list ---------------------------------------------------------------------------


def test_list_is_newest_first_in_pages_and_shows_no_body_or_headers(client):
    ids = [stored(f"req-{n}") for n in range(5)]
    first = client.get("/api/deliveries?limit=2")
    assert first.status_code == 200
    no_secrets(first)
    page = first.get_json()
    assert [d["id"] for d in page["deliveries"]] == ids[::-1][:2]
    assert set(page["deliveries"][0]) == {
        "id",
        "request_id",
        "job_id",
        "received_at",
        "verified",
        "rejected_as",
        "redeliveries",
        "body_length",
        "processed",
        "processed_at",
        "outcome",
        "processing_error",
    }
    seen = [d["id"] for d in page["deliveries"]]
    while page["next_cursor"]:
        page = client.get(f"/api/deliveries?limit=2&cursor={page['next_cursor']}").get_json()
        seen += [d["id"] for d in page["deliveries"]]
    assert seen == ids[::-1]


def test_list_filters_by_request_id_job_processed_and_outcome(client, enqueued):
    job_id = submitted_job("req-a")
    applied = stored("req-a")
    waiting = stored("req-b")
    with transaction() as s:
        rejected = store_rejected(
            s, request_id="req-a", code="bad_signature", reason="signature", headers={}, body=b"{"
        )
    assert client.post(f"/api/deliveries/{applied}/reapply").get_json()["outcome"] == "applied"

    def listed(query: str) -> list[int]:
        response = client.get(f"/api/deliveries?{query}")
        assert response.status_code == 200, response.get_data(as_text=True)
        return [d["id"] for d in response.get_json()["deliveries"]]

    assert listed("request_id=req-a") == [rejected, applied]
    assert listed(f"job_id={job_id}") == [applied]
    assert listed(f"job_id={str(job_id).upper()}") == [applied]
    assert listed("processed=false") == [waiting]
    assert listed("processed=true") == [rejected, applied]
    assert listed("outcome=rejected") == [rejected]
    assert listed("outcome=applied&request_id=req-a&processed=true") == [applied]
    assert listed("processed=&outcome=&job_id=") == [rejected, waiting, applied]  # empty: not given
    assert listed(f"job_id={uuid.uuid4()}") == []


@pytest.mark.parametrize(
    ("query", "bad"),
    [
        ("processed=yes", {"processed"}),
        ("outcome=won", {"outcome"}),
        ("job_id=abcdef12", {"job_id"}),
        ("job_id=" + "0" * 32, {"job_id"}),
        ("request_id=" + "r" * 129, {"request_id"}),
        ("limit=0&limit=5", {"limit"}),
        ("limit=501", {"limit"}),
        ("status=completed", {"status"}),
        ("request_id=a%00b", {"request_id"}),
        ("processed=maybe&outcome=x&job_id=1", {"processed", "outcome", "job_id"}),
    ],
)
def test_bad_list_parameters_are_422_naming_each(client, query, bad):
    assert fields(error_of(client.get(f"/api/deliveries?{query}"), 422, "invalid_request")) == bad


@pytest.mark.parametrize("cursor", ["nope", "WyJkIiwgMF0", "WzEsIDJd", "W10"])
def test_a_cursor_this_api_did_not_issue_is_422(client, cursor):
    assert fields(error_of(client.get(f"/api/deliveries?cursor={cursor}"), 422, "invalid_cursor")) == {
        "cursor"
    }


# -- show ---------------------------------------------------------------------------


def test_show_has_the_body_and_the_payload_status_never_the_headers(client):
    delivery_id = stored("req-e", callback("req-e", ok=False, error="Invalid status code: 500"))
    response = client.get(f"/api/deliveries/{delivery_id}")
    assert response.status_code == 200
    no_secrets(response)
    shown = response.get_json()
    assert shown["payload_status"] == "ERROR" and shown["body"]["error"] == "Invalid status code: 500"
    assert shown["body_text"] is None and shown["processed"] is False and shown["outcome"] is None
    assert shown["request_id"] == "req-e" and shown["verified"] is True and len(shown["body_sha256"]) == 64
    assert "headers" not in shown


def test_a_body_that_is_not_json_is_shown_as_text(client):
    with transaction() as s:
        rejected = store_rejected(
            s,
            request_id=None,
            code="bad_signature",
            reason="no",
            headers=dict(SECRET_HEADERS),
            body=b"\xffnot {",
        )
    response = client.get(f"/api/deliveries/{rejected}")
    no_secrets(response)
    shown = response.get_json()
    assert (shown["body"], shown["body_text"], shown["payload_status"]) == (None, "\ufffdnot {", None)
    assert (shown["verified"], shown["rejected_as"], shown["outcome"]) == (False, "bad_signature", "rejected")


@pytest.mark.parametrize("method, suffix", [("GET", ""), ("POST", "/reapply")])
def test_unknown_and_malformed_ids(client, method, suffix):
    error = error_of(client.open(f"/api/deliveries/424242{suffix}", method=method), 404, "not_found")
    assert error["message"] == "no delivery with id '424242'"
    for bad in ("abc", "0", "-1", "1.5", str(2**63), "%EF%BC%91"):
        response = client.open(f"/api/deliveries/{bad}{suffix}", method=method)
        assert fields(error_of(response, 422, "invalid_request")) == {"delivery_id"}


def test_the_token_is_needed(app, db_url):
    for method, path in (
        ("GET", "/api/deliveries"),
        ("GET", "/api/deliveries/1"),
        ("POST", "/api/deliveries/1/reapply"),
    ):
        error_of(app.test_client().open(path, method=method), 401, "unauthorized")


# -- reapply --------------------------------------------------------------------------


def test_reapplying_an_unprocessed_delivery_applies_it_then_again_changes_nothing(client, enqueued):
    job_id = submitted_job("req-1")
    delivery_id = stored("req-1")
    first = client.post(f"/api/deliveries/{delivery_id}/reapply")
    assert first.status_code == 200
    no_secrets(first)
    answer = first.get_json()
    assert answer["outcome"] == "applied"
    assert answer["delivery"]["processed"] and answer["delivery"]["outcome"] == "applied"
    assert answer["delivery"]["job_id"] == str(job_id)
    with transaction() as s:
        job = s.get(Job, job_id)
        before = (job.status, job.result, job.updated_at, job.webhook_count)
    assert before[:2] == ("completed", {"echo": 1})
    second = client.post(f"/api/deliveries/{delivery_id}/reapply").get_json()
    assert second == {"outcome": "already_processed", "delivery": answer["delivery"]}
    with transaction() as s:
        job = s.get(Job, job_id)
        assert (job.status, job.result, job.updated_at, job.webhook_count) == before
    assert processed_count(job_id) == (1, 1)
    assert enqueued == []


def test_reapplying_is_the_workers_path_with_its_follow_ups(client, enqueued):
    """fal left the result at the queue: re-applying asks for a fetch, as the task does;
    a callback for no known job is recorded as such, not forced onto one."""
    job_id = submitted_job("req-f")
    needs_fetch = stored("req-f", callback("req-f", payload=None, payload_error="too large"))
    answer = client.post(f"/api/deliveries/{needs_fetch}/reapply").get_json()
    assert answer["outcome"] == "result_fetch_needed"
    assert [(f.work, f.target) for f in enqueued] == [(Work.FETCH_RESULT, str(job_id))]
    orphan = stored("req-nobody")
    answer = client.post(f"/api/deliveries/{orphan}/reapply").get_json()
    assert (
        answer["outcome"] == "unknown_job"
        and "no job has this request id" in answer["delivery"]["processing_error"]
    )


def test_a_rejected_delivery_is_never_applied(client, enqueued):
    job_id = submitted_job("req-r")
    with transaction() as s:
        rejected = store_rejected(
            s, request_id="req-r", code="bad_signature", reason="bad", headers={}, body=callback("req-r")
        )
    answer = client.post(f"/api/deliveries/{rejected}/reapply").get_json()
    assert answer["outcome"] == "already_processed" and answer["delivery"]["outcome"] == "rejected"
    assert processed_count(job_id) == (0, 0)


def race(base_url: str, path: str, callers: int = 2) -> list[str]:
    """POST `path` from `callers` threads released at the same instant; their outcomes."""
    barrier = threading.Barrier(callers)
    outcomes: list[str] = []

    def call() -> None:
        with httpx.Client(base_url=base_url, headers=API_HEADERS, timeout=30) as http:
            barrier.wait()
            response = http.post(path)
        assert response.status_code == 200, response.text
        outcomes.append(response.json()["outcome"])

    threads = [threading.Thread(target=call) for _ in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return outcomes


def test_two_reapplies_at_once_leave_one_applied_result(app, enqueued):
    """Two callers (threads, each its own HTTP connection and database session) re-apply
    the same unprocessed delivery at the same instant, five times over: each time exactly
    one applies it and the other is told it was processed already."""
    server = ServerThread(app).start()
    try:
        for n in range(5):
            request_id = f"req-race-{n}"
            job_id = submitted_job(request_id)
            image = {"url": f"https://cdn.example/{n}.png", "content_type": "image/png", "file_size": n}
            delivery_id = stored(request_id, callback(request_id, payload={"image": image}))
            outcomes = race(server.url, f"/api/deliveries/{delivery_id}/reapply")
            assert sorted(outcomes) == ["already_processed", "applied"]
            assert processed_count(job_id) == (1, 1)
            with transaction() as s:
                files = s.scalar(
                    select(func.count()).select_from(ResultFile).where(ResultFile.job_id == job_id)
                )
                delivery = s.get(WebhookDelivery, delivery_id)
            assert files == 1 and delivery.outcome == "applied"
    finally:
        server.stop()


def test_when_both_get_past_the_first_look_the_row_lock_decides(db_url, monkeypatch, enqueued):
    """The harder interleaving, forced: both callers have seen the delivery unprocessed
    and enter apply_delivery together; its row lock lets one apply it, the other finds it
    processed and reports so."""
    import falbridge
    from falbridge.worker.apply import reapply as step

    entered = threading.Barrier(2, timeout=30)
    real = step.apply_delivery

    def together(delivery_id: int):
        entered.wait()
        return real(delivery_id)

    monkeypatch.setattr(step, "apply_delivery", together)
    job_id = submitted_job("req-lock")
    delivery_id = stored("req-lock")
    outcomes: list[str] = []

    def call() -> None:
        outcomes.append(falbridge.reapply_delivery(delivery_id).outcome)

    threads = [threading.Thread(target=call) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(outcomes) == ["already_processed", "applied"]
    assert processed_count(job_id) == (1, 1)


def test_delivery_schemas_name_exactly_the_serialized_fields(db_url):
    from falbridge.models.deliveries import delivery_detail, delivery_summary
    from falbridge.webhooks.api.openapi_deliveries import DELIVERY_DETAIL, DELIVERY_SUMMARY

    delivery_id = stored("req-s")
    with transaction() as s:
        delivery = s.get(WebhookDelivery, delivery_id)
        assert list(DELIVERY_SUMMARY) == list(delivery_summary(delivery))
        assert list(DELIVERY_DETAIL) == list(delivery_detail(delivery))
