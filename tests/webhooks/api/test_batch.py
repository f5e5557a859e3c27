"""POST /api/jobs/batch: one result per job in order, each the job or the error POST
/api/jobs would give it alone; the limits; and, through the real worker, every job of a
batch reaching fal and completing."""

from __future__ import annotations

import httpx
import pytest

from falbridge.webhooks.app import create_app
from tests.plugins.db import config_with
from tests.plugins.pipeline import API_HEADERS, TEST_API_TOKEN
from tests.webhooks.api.test_jobs import authed, count, error_of, fields

SOME = "fal-ai/some/model"
EVF = "fal-ai/evf-sam"


@pytest.fixture
def client(db_url, redis_url, monkeypatch, tmp_path):
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("FALBRIDGE_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("FALBRIDGE_API_TOKENS", TEST_API_TOKEN)
    return authed(create_app())


def test_each_job_gets_the_answer_post_api_jobs_would_give_it(client):
    jobs = [
        {"endpoint_id": SOME, "input": {"n": 1}, "external_id": "b-1"},
        {"endpoint_id": EVF, "input": {"prompt": "cat"}},
        {"endpoint_id": SOME, "input": {"n": 2}, "options": {"priority": "low"}},
        {"endpoint_id": SOME, "input": {"n": 3}, "options": {"priority": "urgent"}},
        "not a job",
        {"endpoint_id": SOME, "inputs": {}},
        {"endpoint_id": SOME, "input": {"n": 1}, "external_id": "b-1"},
        {"endpoint_id": SOME, "input": {"n": 9}, "external_id": "b-1"},
    ]
    r = client.post("/api/jobs/batch", json={"jobs": jobs})
    assert r.status_code == 200, r.get_data(as_text=True)
    results = r.get_json()["results"]
    assert len(results) == len(jobs)
    for refused in (1, 3, 5):  # the error of the body alone, with its HTTP status beside it
        alone = client.post("/api/jobs", json=jobs[refused])
        assert results[refused]["error"] == {**alone.get_json()["error"], "status": alone.status_code}
    assert (results[4]["error"]["status"], results[4]["error"]["code"]) == (422, "invalid_request")
    assert [d["field"] for d in results[4]["error"]["details"]] == ["(job)"]
    first, low, again = results[0], results[2], results[6]
    assert first["created"] and first["job"]["external_id"] == "b-1"
    assert low["job"]["priority"] == "low" and low["job"]["options"] == {"priority": "low"}
    assert not again["created"] and again["job"]["id"] == first["job"]["id"]
    assert results[7]["error"]["code"] == "external_id_conflict" and results[7]["error"]["status"] == 409
    shown = client.get(f"/api/jobs/{first['job']['id']}").get_json()
    assert shown == first["job"]
    assert count() == 2


def test_an_empty_batch_is_an_empty_answer(client):
    r = client.post("/api/jobs/batch", json={"jobs": []})
    assert (r.status_code, r.get_json()) == (200, {"results": []})


@pytest.mark.parametrize(
    ("body", "field"),
    [({}, "jobs"), ({"jobs": {"a": 1}}, "jobs"), ({"jobs": [], "job": []}, "job")],
)
def test_a_body_without_a_list_of_jobs_is_422_naming_it(client, body, field):
    assert fields(error_of(client.post("/api/jobs/batch", json=body), 422, "invalid_request")) == {field}


def test_more_than_1000_jobs_is_413_naming_the_limit(client):
    jobs = [{"endpoint_id": SOME, "input": {}}] * 1001
    error = error_of(client.post("/api/jobs/batch", json={"jobs": jobs}), 413, "batch_too_large")
    assert error["details"] == {"field": "jobs", "limit": 1000} and "1000" in error["message"]
    assert count() == 0


def test_the_body_limit_applies(client):
    small = authed(create_app(config_with(FALBRIDGE_MAX_API_BODY_BYTES="2000")))
    jobs = [{"endpoint_id": SOME, "input": {"text": "x" * 100}}] * 20
    error_of(small.post("/api/jobs/batch", json={"jobs": jobs}), 413, "request_entity_too_large")
    assert count() == 0


def test_a_batch_needs_the_token(client):
    r = client.application.test_client().post("/api/jobs/batch", json={"jobs": []})
    assert r.status_code == 401


def test_options_names_only_the_methods_of_the_batch_route(client):
    # Its path also matches GET /api/jobs/<job_id>; that GET is not the batch route's.
    r = client.options("/api/jobs/batch")
    assert r.status_code == 200
    assert {m.strip() for m in r.headers["Allow"].split(",")} == {"OPTIONS", "POST"}


def test_every_job_of_a_batch_reaches_fal_and_completes(pipeline):
    jobs = [{"endpoint_id": SOME, "input": {"n": n}} for n in range(12)]
    r = httpx.post(f"{pipeline.receiver_url}/api/jobs/batch", json={"jobs": jobs}, headers=API_HEADERS)
    assert r.status_code == 200, r.text
    ids = [result["job"]["id"] for result in r.json()["results"]]
    done = pipeline.wait_terminal(*ids, timeout=60)
    assert [job.status for job in done] == ["completed"] * 12
    assert sorted(job.result["echo"]["n"] for job in done) == list(range(12))
    assert len(pipeline.sandbox.ground_truth()["requests"]) == 12
