"""A job's fal options from the outside: POST /api/jobs refuses a bad one naming it and
stores nothing; the job shows them; the same external id with other options is a
conflict. Then the round trip: from the HTTP API, falbridge.Client, the Python API and the
CLI (in process and over the API), through the real worker, to the headers the sandbox saw
on the submit (its ground truth), a resubmission included."""

from __future__ import annotations

import json

import httpx
import pytest
from click.testing import CliRunner

import falbridge
from falbridge.cli import main
from falbridge.models.db import transaction
from falbridge.models.tables import Job
from falbridge.webhooks.app import create_app
from falbridge.worker import submit as submit_step
from tests.plugins.pipeline import API_HEADERS, TEST_API_TOKEN
from tests.webhooks.api.test_jobs import authed, count, error_of, fields

SOME = "fal-ai/some/model"
OPTIONS = {
    "priority": "low",
    "start_timeout": 30,
    "object_lifecycle": 3600,
    "store_io": False,
    "tags": {"team": "vision", "run": "r-7"},
}
# What fal must have been sent for OPTIONS (the sandbox records header names lowercased).
HEADERS = {
    "x-fal-queue-priority": "low",
    "x-fal-request-timeout": "30",
    "x-fal-object-lifecycle-preference": '{"expiration_duration_seconds":3600}',
    "x-fal-store-io": "0",
    "x-fal-tags": "run=r-7,team=vision",
}


@pytest.fixture
def client(db_url, redis_url, monkeypatch, tmp_path):
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("FALBRIDGE_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("FALBRIDGE_API_TOKENS", TEST_API_TOKEN)
    return authed(create_app())


def test_the_job_shows_its_options_and_priority(client):
    r = client.post("/api/jobs", json={"endpoint_id": SOME, "input": {}, "options": OPTIONS})
    assert r.status_code == 202, r.get_data(as_text=True)
    body = r.get_json()
    assert (body["options"], body["priority"]) == (OPTIONS, "low")
    assert client.get(r.headers["Location"]).get_json() == body
    plain = client.post("/api/jobs", json={"endpoint_id": SOME, "input": {}, "options": None}).get_json()
    assert (plain["options"], plain["priority"]) == (None, "normal")
    with transaction() as s:
        assert {job.priority for job in s.query(Job)} == {"low", "normal"}


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"prio": "low"}, "options.prio"),
        ({"priority": "urgent"}, "options.priority"),
        ({"start_timeout": 0.5}, "options.start_timeout"),
        ({"object_lifecycle": -1}, "options.object_lifecycle"),
        ({"store_io": 0}, "options.store_io"),
        ({"tags": {f"k{i}": "v" for i in range(11)}}, "options.tags"),
        ("low", "options"),
    ],
)
def test_a_bad_option_is_422_naming_it_and_nothing_is_stored(client, options, field):
    r = client.post("/api/jobs", json={"endpoint_id": SOME, "input": {}, "options": options})
    assert fields(error_of(r, 422, "invalid_options")) == {field}
    assert count() == 0


def test_the_same_external_id_with_other_options_is_a_conflict(client):
    body = {"endpoint_id": SOME, "input": {}, "external_id": "opt-1", "options": OPTIONS}
    first = client.post("/api/jobs", json=body)
    # The same options in another order, and a whole number as a float: the same job.
    same = {**OPTIONS, "start_timeout": 30.0, "tags": {"run": "r-7", "team": "vision"}}
    again = client.post("/api/jobs", json={**body, "options": same})
    assert (first.status_code, again.status_code) == (202, 200)
    for other in ({**OPTIONS, "priority": "normal"}, None):
        r = client.post("/api/jobs", json={**body, "options": other})
        assert error_of(r, 409, "external_id_conflict")["details"]["job_id"] == first.get_json()["id"]
    assert count() == 1


def _headers_seen(pipeline, job_id: str) -> list[dict[str, str]]:
    """The fal headers of each submit fal got for this job (the sandbox's ground truth)."""
    [job] = pipeline.wait_terminal(job_id)
    assert job.status == "completed", job.error
    truth = pipeline.sandbox.ground_truth()["requests"]
    mine = [r for r in truth if r["webhook_url"] and str(job_id) in r["webhook_url"]]
    return [{k: v for k, v in r["headers_seen"].items() if k in HEADERS} for r in mine]


def test_options_reach_fal_from_the_http_api(pipeline):
    r = httpx.post(
        f"{pipeline.receiver_url}/api/jobs",
        json={"endpoint_id": SOME, "input": {"n": 1}, "options": OPTIONS},
        headers=API_HEADERS,
    )
    assert r.status_code == 202, r.text
    assert _headers_seen(pipeline, r.json()["id"]) == [HEADERS]


def test_options_reach_fal_from_the_python_api_and_the_client(pipeline):
    local = falbridge.submit(SOME, {"n": 2}, **OPTIONS)
    with falbridge.Client(pipeline.receiver_url, TEST_API_TOKEN) as remote:
        over_http = remote.submit(SOME, {"n": 3}, **OPTIONS)
    assert local.options == over_http.options == OPTIONS
    assert _headers_seen(pipeline, local.id) == [HEADERS]
    assert _headers_seen(pipeline, over_http.id) == [HEADERS]
    with pytest.raises(falbridge.InvalidInput, match=r"options\.start_timeout"):
        falbridge.submit(SOME, {"n": 4}, start_timeout=1)


@pytest.mark.parametrize("over_the_api", [False, True])
def test_options_reach_fal_from_the_cli(pipeline, monkeypatch, over_the_api):
    monkeypatch.setenv("FALBRIDGE_API_TOKEN", TEST_API_TOKEN)
    where = ["--api", pipeline.receiver_url] if over_the_api else []
    flags = ["--priority", "low", "--start-timeout", "30", "--object-lifecycle", "3600", "--no-store-io"]
    tags = ["--tag", "team=vision", "--tag", "run=r-7"]
    args = [*where, "submit", SOME, "--input", json.dumps({"cli": over_the_api}), *flags, *tags]
    result = CliRunner().invoke(main, args, prog_name="falbridge")
    assert result.exit_code == 0, result.output
    job_id = result.stdout.split()[0]
    assert _headers_seen(pipeline, job_id) == [HEADERS]
    shown = CliRunner().invoke(main, [*where, "jobs", "show", job_id, "--json"], prog_name="falbridge")
    assert json.loads(shown.stdout)["options"] == OPTIONS


def test_a_bad_cli_option_exits_2_naming_it(db_url):
    result = CliRunner().invoke(main, ["submit", SOME, "--tag", "Team=x"], prog_name="falbridge")
    assert result.exit_code == 2 and result.stderr.startswith("error: options.tags")
    refused = CliRunner().invoke(main, ["submit", SOME, "--tag", "novalue"], prog_name="falbridge")
    assert refused.exit_code == 2 and "--tag takes KEY=VALUE" in refused.stderr


def test_a_resubmission_sends_the_options_again(pipeline):
    # fal takes the first submit but its answer is lost, and no callback comes: the job's
    # outcome is unknown until the sweeper's one resubmission, which must carry them too.
    pipeline.sandbox.set_faults(submit_response_lost=1.0, drop=1.0)
    job = falbridge.submit(SOME, {"n": 5}, **OPTIONS)
    pipeline.wait_status(job.id, "outcome_unknown")
    pipeline.sandbox.set_faults(submit_response_lost=0.0, drop=0.0)
    assert submit_step.submit(job.id, resubmit=True).outcome is submit_step.Submitted.SUBMITTED
    assert _headers_seen(pipeline, job.id) == [HEADERS, HEADERS]
