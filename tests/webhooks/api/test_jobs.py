"""The jobs API through the real Flask app, on each database backend.

Submitting publishes a real Celery task to the session's embedded Redis (`redis_url`).
A worker from the pipeline tests may be running in the same session and pick those
tasks up, so assertions here never depend on a job submitted over HTTP staying pending;
jobs whose status matters are created directly with models.jobs.create_job.
"""

from __future__ import annotations

import base64
import json
import threading
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from falbridge.models.db import transaction
from falbridge.models.jobs import create_job
from falbridge.models.tables import Job, JobEvent
from falbridge.webhooks.app import create_app
from tests.plugins.pipeline import API_HEADERS, TEST_API_TOKEN

EVF = "fal-ai/evf-sam"
CAT = {"prompt": "cat", "image_url": "https://example.com/cat.png"}
# No job has it (fixed, not drawn at collection: parallel test processes must collect the same ids).
UNKNOWN_JOB_ID = "1d9e535a-7a7e-4ca4-a2ae-ad5cae31f516"
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def app(db_url, redis_url, monkeypatch, tmp_path):
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("FALBRIDGE_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("FALBRIDGE_API_TOKENS", TEST_API_TOKEN)
    return create_app()


def authed(app):
    """A test client that sends the API token with every request."""
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = API_HEADERS["Authorization"]
    return client


@pytest.fixture
def client(app):
    return authed(app)


def count(model=Job) -> int:
    with transaction() as s:
        return s.scalar(select(func.count()).select_from(model))


def make_jobs(specs) -> list[Job]:
    """Insert jobs in one transaction; each spec may set status, created_at, endpoint, external_id."""
    with transaction() as s:
        jobs = []
        for spec in specs:
            job, _ = create_job(
                s, spec.get("endpoint", "fal-ai/x/y"), {"n": len(jobs)}, external_id=spec.get("external_id")
            )
            job.status = spec.get("status", "pending")
            job.created_at = spec.get("created_at", T0 + timedelta(seconds=len(jobs)))
            jobs.append(job)
    return jobs


def error_of(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)
    error = response.get_json()["error"]
    assert error["code"] == code and error["message"]
    return error


def fields(error) -> set[str]:
    return {d["field"] for d in error["details"]}


# -- POST /api/jobs --------------------------------------------------------------


def test_create_returns_202_with_full_detail(client):
    r = client.post(
        "/api/jobs",
        json={"endpoint_id": EVF, "input": CAT, "external_id": "order-1", "metadata": {"customer": 7}},
    )
    assert r.status_code == 202
    body = r.get_json()
    assert r.headers["Location"].endswith(f"/api/jobs/{body['id']}")
    uuid.UUID(body["id"])
    assert {
        "id",
        "endpoint_id",
        "status",
        "input",
        "external_id",
        "metadata",
        "request_id",
        "gateway_request_id",
        "status_url",
        "response_url",
        "cancel_url",
        "result",
        "result_pending",
        "error",
        "error_type",
        "error_detail",
        "created_at",
        "updated_at",
        "submitted_at",
        "completed_at",
        "cancel_requested_at",
        "submit_attempts",
        "poll_attempts",
        "webhook_count",
        "files",
        "events",
    } <= body.keys()
    assert (body["endpoint_id"], body["input"], body["external_id"], body["metadata"]) == (
        EVF,
        CAT,
        "order-1",
        {"customer": 7},
    )
    assert datetime.fromisoformat(body["created_at"]).utcoffset() == timedelta(0)
    first = body["events"][0]
    assert (first["from_status"], first["to_status"], first["source"]) == (None, "pending", "api")
    assert count() == 1


@pytest.mark.parametrize("external_id", [None, "order-9"])
def test_create_response_is_the_job_as_stored(client, external_id):
    """The 202 body is built from the inserted row, not re-read: it must say exactly what
    a GET of the job says (no worker runs here, so nothing changes in between)."""
    r = client.post("/api/jobs", json={"endpoint_id": EVF, "input": CAT, "external_id": external_id})
    assert r.status_code == 202
    shown = client.get(r.headers["Location"])
    assert shown.status_code == 200 and shown.get_json() == r.get_json()
    assert len(r.get_json()["events"]) == 1 and r.get_json()["files"] == []


def test_same_external_id_returns_the_existing_job_with_200(client):
    request = {"endpoint_id": EVF, "input": CAT, "external_id": "order-2"}
    first = client.post("/api/jobs", json=request)
    again = client.post("/api/jobs", json=request)
    assert (first.status_code, again.status_code) == (202, 200)
    assert again.get_json()["id"] == first.get_json()["id"]
    assert count() == 1


def test_same_external_id_with_other_input_is_409(client):
    first = client.post("/api/jobs", json={"endpoint_id": EVF, "input": CAT, "external_id": "k"})
    r = client.post(
        "/api/jobs", json={"endpoint_id": EVF, "input": {**CAT, "prompt": "dog"}, "external_id": "k"}
    )
    error = error_of(r, 409, "external_id_conflict")
    assert error["details"]["job_id"] == first.get_json()["id"]
    assert count() == 1


def test_even_blur_mask_is_rejected_and_nothing_stored(client):
    r = client.post("/api/jobs", json={"endpoint_id": EVF, "input": {**CAT, "blur_mask": 4}})
    error = error_of(r, 422, "invalid_input")
    assert fields(error) == {"blur_mask"}
    assert "odd" in error["details"][0]["message"]
    assert count(Job) == 0 and count(JobEvent) == 0


@pytest.mark.parametrize("body", [b"{not json", b"", b'{"endpoint_id": NaN}', b"[1, 2]", b'"text"'])
def test_body_that_is_not_a_json_object_is_400(client, body):
    r = client.post("/api/jobs", data=body, content_type="application/json")
    error_of(r, 400, "invalid_json")
    assert count() == 0


def test_oversized_body_is_413(client):
    body = b'{"endpoint_id": "fal-ai/x/y", "input": {"blob": "' + b"a" * (17 * 1024 * 1024) + b'"}}'
    error_of(
        client.post("/api/jobs", data=body, content_type="application/json"), 413, "request_entity_too_large"
    )
    assert count() == 0


@pytest.mark.parametrize(
    "body, field",
    [
        ({"input": CAT}, "endpoint_id"),
        ({"endpoint_id": 5, "input": CAT}, "endpoint_id"),
        ({"endpoint_id": EVF}, "input"),
        ({"endpoint_id": EVF, "input": "prompt=cat"}, "input"),
        ({"endpoint_id": EVF, "input": [CAT]}, "input"),
        ({"endpoint_id": EVF, "input": CAT, "metadata": ["a"]}, "metadata"),
        ({"endpoint_id": EVF, "input": CAT, "metadata": "a"}, "metadata"),
        ({"endpoint_id": EVF, "input": CAT, "external_id": 12}, "external_id"),
        ({"endpoint_id": EVF, "input": CAT, "external_id": ""}, "external_id"),
        ({"endpoint_id": EVF, "input": CAT, "external_id": "x" * 256}, "external_id"),
        ({"endpoint_id": EVF, "input": CAT, "externalid": "k"}, "externalid"),
    ],
)
def test_malformed_fields_are_422_naming_the_field(client, body, field):
    error = error_of(client.post("/api/jobs", json=body), 422, "invalid_request")
    assert fields(error) == {field}
    assert count() == 0


def test_unknown_field_suggests_the_right_name(client):
    r = client.post("/api/jobs", json={"endpoint_id": EVF, "input": CAT, "metdata": {}})
    assert "did you mean 'metadata'" in error_of(r, 422, "invalid_request")["details"][0]["message"]


@pytest.mark.parametrize(
    "endpoint_id", ["https://queue.fal.run/fal-ai/evf-sam", "evf-sam", "fal-ai/../admin", "fal-ai/x?y"]
)
def test_bad_endpoint_id_is_422(client, endpoint_id):
    r = client.post("/api/jobs", json={"endpoint_id": endpoint_id, "input": CAT})
    assert fields(error_of(r, 422, "invalid_endpoint_id")) == {"endpoint_id"}
    assert count() == 0


def test_pass_through_endpoint_is_stored_as_given(client):
    payload = {"prompt": "a fox", "seed": 7, "loras": [{"path": "x", "scale": 0.5}], "extra": None}
    r = client.post("/api/jobs", json={"endpoint_id": "fal-ai/flux/dev", "input": payload})
    assert r.status_code == 202
    assert client.get(f"/api/jobs/{r.get_json()['id']}").get_json()["input"] == payload


def test_external_id_race_through_the_api_creates_one_job(app):
    barrier = threading.Barrier(8)
    statuses, ids = [], []

    def post():
        client = authed(app)
        barrier.wait()
        r = client.post("/api/jobs", json={"endpoint_id": EVF, "input": CAT, "external_id": "race"})
        statuses.append(r.status_code)
        ids.append(r.get_json()["id"])

    threads = [threading.Thread(target=post) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(statuses) == [200] * 7 + [202]
    assert len(set(ids)) == 1
    assert count() == 1


# -- GET /api/jobs/<id> ------------------------------------------------------------


def test_detail_of_existing_job(client):
    [job] = make_jobs([{"status": "pending"}])
    body = client.get(f"/api/jobs/{job.id}").get_json()
    assert body["id"] == str(job.id) and body["files"] == [] and len(body["events"]) == 1


@pytest.mark.parametrize("job_id", [UNKNOWN_JOB_ID, "not-a-uuid"])
def test_detail_of_unknown_job_is_404(client, job_id):
    error_of(client.get(f"/api/jobs/{job_id}"), 404, "not_found")


# -- GET /api/jobs -------------------------------------------------------------------


def ids_of(response) -> list[str]:
    assert response.status_code == 200, response.get_data(as_text=True)
    return [j["id"] for j in response.get_json()["jobs"]]


def test_listing_filters(client):
    a, b, c, d = make_jobs(
        [
            {"status": "completed", "endpoint": EVF, "created_at": T0},
            {"status": "failed", "endpoint": EVF, "created_at": T0 + timedelta(hours=1)},
            {
                "status": "completed",
                "endpoint": "fal-ai/flux/dev",
                "external_id": "ext-c",
                "created_at": T0 + timedelta(hours=2),
            },
            {"status": "pending", "endpoint": "fal-ai/flux/dev", "created_at": T0 + timedelta(hours=3)},
        ]
    )
    a, b, c, d = (str(j.id) for j in (a, b, c, d))
    assert ids_of(client.get("/api/jobs")) == [d, c, b, a]
    assert ids_of(client.get("/api/jobs?status=completed")) == [c, a]
    assert ids_of(client.get(f"/api/jobs?endpoint_id={EVF}")) == [b, a]
    assert ids_of(client.get("/api/jobs?external_id=ext-c")) == [c]
    assert ids_of(client.get("/api/jobs?status=completed&endpoint_id=fal-ai/flux/dev")) == [c]
    # created_after is inclusive, created_before exclusive; no offset means UTC.
    assert ids_of(client.get("/api/jobs?created_after=2024-05-01T13:00:00")) == [d, c, b]
    assert ids_of(client.get("/api/jobs?created_before=2024-05-01T13:00:00Z")) == [a]
    assert ids_of(
        client.get(
            "/api/jobs",
            query_string={
                "created_after": "2024-05-01T14:00:00+02:00",
                "created_before": "2024-05-01T14:00:00",
            },
        )
    ) == [b, a]
    assert ids_of(client.get("/api/jobs?status=&cursor=")) == [d, c, b, a]
    summary = client.get("/api/jobs?limit=1").get_json()["jobs"][0]
    assert not {"input", "result", "files", "events", "status_url"} & summary.keys()


@pytest.mark.parametrize(
    "query, field",
    [
        ("limit=0", "limit"),
        ("limit=501", "limit"),
        ("limit=abc", "limit"),
        ("limit=-1", "limit"),
        ("limit=1.5", "limit"),
        ("limit=+5", "limit"),
        ("limit=" + "9" * 5000, "limit"),
        ("status=done", "status"),
        ("statuss=pending", "statuss"),
        ("created_after=yesterday", "created_after"),
        ("created_before=2024-13-01", "created_before"),
        ("status=pending&status=failed", "status"),
    ],
)
def test_bad_listing_parameters_are_422(client, query, field):
    error = error_of(client.get(f"/api/jobs?{query}"), 422, "invalid_request")
    assert field in fields(error)


def test_unknown_parameter_suggests_the_right_one(client):
    error = error_of(client.get("/api/jobs?statuss=pending"), 422, "invalid_request")
    assert "did you mean 'status'" in error["details"][0]["message"]


def test_limit_bounds_are_inclusive(client):
    make_jobs([{}, {}])
    assert len(ids_of(client.get("/api/jobs?limit=1"))) == 1
    assert len(ids_of(client.get("/api/jobs?limit=500"))) == 2


def _b64(raw: str) -> str:
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    [
        "garbage",
        _b64('["2024-05-01T12:00:00+00:00", 5]'),
        _b64(f'["2024-05-01T12:00:00", "{UNKNOWN_JOB_ID}"]'),
        _b64("{}"),
    ],
)
def test_bad_cursor_is_422(client, cursor):
    error_of(client.get("/api/jobs", query_string={"cursor": cursor}), 422, "invalid_cursor")


def walk(client, limit: int) -> tuple[list[str], list[int]]:
    ids, sizes, cursor = [], [], None
    while True:
        query = {"limit": limit, **({"cursor": cursor} if cursor else {})}
        body = client.get("/api/jobs", query_string=query).get_json()
        ids += [j["id"] for j in body["jobs"]]
        sizes.append(len(body["jobs"]))
        cursor = body["next_cursor"]
        if cursor is None:
            return ids, sizes


def test_pagination_is_exact_across_pages(client):
    jobs = make_jobs([{"created_at": T0 + timedelta(seconds=i, microseconds=i)} for i in range(25)])
    expected = [str(j.id) for j in sorted(jobs, key=lambda j: j.created_at, reverse=True)]
    ids, sizes = walk(client, 7)
    assert sizes == [7, 7, 7, 4]
    assert ids == expected


def test_pagination_breaks_created_at_ties_by_id(client):
    jobs = make_jobs([{"created_at": T0} for _ in range(10)])
    ids, sizes = walk(client, 3)
    assert sizes == [3, 3, 3, 1]
    assert ids == [str(j.id) for j in sorted(jobs, key=lambda j: j.id, reverse=True)]


# -- POST /api/jobs/<id>/cancel ---------------------------------------------------


def test_cancel_a_pending_job_then_again(client):
    [job] = make_jobs([{"status": "pending"}])
    r = client.post(f"/api/jobs/{job.id}/cancel")
    assert r.status_code == 202
    body = r.get_json()
    assert body["outcome"] == "cancelled"
    assert body["status"] == "cancelled" and body["cancel_requested_at"]
    assert {k: v for k, v in body.items() if k != "outcome"} == client.get(f"/api/jobs/{job.id}").get_json()
    assert [e["to_status"] for e in body["events"]] == ["pending", "cancelled"]
    error = error_of(client.post(f"/api/jobs/{job.id}/cancel"), 409, "already_terminal")
    assert error["details"] == {"status": "cancelled"}


@pytest.mark.parametrize("job_id", [UNKNOWN_JOB_ID, "not-a-uuid"])
def test_cancel_unknown_job_is_404(client, job_id):
    error_of(client.post(f"/api/jobs/{job_id}/cancel"), 404, "not_found")


def test_errors_outside_the_routes_are_json_too(client):
    error_of(client.get("/api/nope"), 404, "not_found")
    error_of(client.get("/api/jobs/x/cancel"), 405, "method_not_allowed")


def test_summary_and_detail_are_plain_json(client):
    [job] = make_jobs([{"status": "completed"}])
    body = client.get(f"/api/jobs/{job.id}").get_json()
    assert json.loads(json.dumps(body)) == body
