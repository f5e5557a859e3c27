"""The changes feed and metadata filters of `GET /api/jobs`, through the real app, and the
same calls through falbridge.list (in process), falbridge.Client and the CLI."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import httpx
import pytest
from click.testing import CliRunner

import falbridge
from falbridge.cli import main
from falbridge.models.db import transaction
from falbridge.models.jobs import create_job, get_job, lock_job, transition
from falbridge.models.states import EventSource, JobStatus
from falbridge.webhooks.app import create_app
from tests.plugins.pipeline import TEST_API_TOKEN
from tests.webhooks.api.test_jobs import authed

SINCE = "2020-01-01T00:00:00Z"


@pytest.fixture
def app(db_url, redis_url, monkeypatch, tmp_path):
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("FALBRIDGE_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("FALBRIDGE_API_TOKENS", TEST_API_TOKEN)
    monkeypatch.setenv("FALBRIDGE_FEED_SETTLE_S", "0")  # nothing held back: no waiting in tests
    return create_app()


@pytest.fixture
def jobs() -> list[str]:
    """Three jobs, the first changed last; tiers gold, 7 (a number) and "7" (a string)."""
    with transaction() as s:
        made = [create_job(s, "fal-ai/x/y", {}, metadata={"tier": tier})[0] for tier in ("gold", 7, "7")]
    with transaction() as s:
        transition(s, lock_job(s, made[0].id), JobStatus.SUBMITTED, EventSource.WEBHOOK)
    return [str(job.id) for job in made]


def _feed_position(job_id: str) -> tuple[datetime, str]:
    with transaction() as s:
        job = get_job(s, job_id)
        assert job is not None
        return job.updated_at, job.id.hex


def test_updated_after_pages_oldest_change_first(app, jobs):
    client = authed(app)
    first = client.get(f"/api/jobs?updated_after={SINCE}&limit=2").get_json()
    # The two unchanged jobs may share their creation's updated_at (one transaction, the
    # clock's resolution): the job id breaks the tie.
    assert [j["id"] for j in first["jobs"]] == sorted(jobs[1:], key=_feed_position)
    rest = client.get(f"/api/jobs?cursor={first['next_cursor']}").get_json()
    assert [(j["id"], j["status"]) for j in rest["jobs"]] == [(jobs[0], "submitted")]
    caught_up = client.get(f"/api/jobs?cursor={rest['next_cursor']}").get_json()
    assert caught_up == {"jobs": [], "next_cursor": rest["next_cursor"]}


def test_metadata_filters_read_the_value_as_json(app, jobs):
    client = authed(app)

    def ids(query: str) -> list[str]:
        return [j["id"] for j in client.get(f"/api/jobs?{query}").get_json()["jobs"]]

    assert ids("metadata[tier]=gold") == [jobs[0]]
    assert ids("metadata[tier]=7") == [jobs[1]]
    assert ids('metadata[tier]="7"') == [jobs[2]]
    assert ids(f"metadata[tier]=7&updated_after={SINCE}") == [jobs[1]]
    assert ids("metadata[missing]=7") == []


@pytest.mark.parametrize(
    ("query", "field", "code"),
    [
        ("metadata[a%20b]=1", "metadata[a b]", "invalid_request"),
        ("updated_after=yesterday", "updated_after", "invalid_request"),
        ("metadata[k]=1" + "".join(f"&metadata[k{n}]=1" for n in range(10)), "metadata", "invalid_request"),
    ],
)
def test_bad_feed_parameters_are_422_naming_them(app, query, field, code):
    answer = authed(app).get(f"/api/jobs?{query}")
    assert answer.status_code == 422
    error = answer.get_json()["error"]
    assert error["code"] == code and field in [d["field"] for d in error["details"]]


def test_a_listing_cursor_with_updated_after_is_refused(app, jobs):
    client = authed(app)
    listing_cursor = client.get("/api/jobs?limit=1").get_json()["next_cursor"]
    answer = client.get(f"/api/jobs?updated_after={SINCE}&cursor={listing_cursor}")
    assert answer.status_code == 422 and answer.get_json()["error"]["code"] == "invalid_cursor"


def test_the_python_api_the_client_and_the_cli_read_the_same_feed(app, jobs):
    since = datetime(2020, 1, 1, tzinfo=UTC)
    local = falbridge.list(updated_after=since, metadata={"tier": 7})
    transport = httpx.WSGITransport(app=app)
    with falbridge.Client("http://falbridge.test", TEST_API_TOKEN, transport=transport) as client:
        remote = client.list(updated_after=since, metadata={"tier": 7})
        assert client.list(updated_after=since, metadata={"tier": "7"}).jobs[0].id == jobs[2]
    assert local == remote and [j.id for j in local.jobs] == [jobs[1]] and local.next_cursor
    listed = CliRunner().invoke(
        main, ["jobs", "list", "--updated-after", SINCE, "--metadata", "tier=7", "--json"]
    )
    assert listed.exit_code == 0, listed.output
    assert json.loads(listed.stdout) == local.to_json()
    bad = CliRunner().invoke(main, ["jobs", "list", "--metadata", "tier"])
    assert bad.exit_code == 2 and bad.stderr.startswith("error: --metadata takes KEY=VALUE")
