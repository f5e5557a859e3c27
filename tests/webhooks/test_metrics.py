"""GET /metrics over real HTTP, parsed by prometheus_client's own parser: the names and
labels promised in docs/observability.md, the token it wants unless the flag opens it, and
a real pipeline run (API, Celery worker, sandbox as fal, signed callbacks) moving the
counters, on the web app and on the worker's own port."""

from __future__ import annotations

import base64
import os

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from falbridge import config
from falbridge.models.states import EventSource, JobStatus
from falbridge.webhooks.app import create_app
from tests.plugins.pipeline import API_HEADERS, ServerThread
from tests.plugins.waiting import poll_until

EXPECTED = {
    "falbridge_jobs_submitted": "counter",
    "falbridge_jobs_terminal": "counter",
    "falbridge_job_duration_seconds": "histogram",
    "falbridge_fal_submit_duration_seconds": "histogram",
    "falbridge_webhook_deliveries": "counter",
    "falbridge_webhook_verification_duration_seconds": "histogram",
    "falbridge_jobs": "gauge",
    "falbridge_inbox_backlog": "gauge",
    "falbridge_outbox_backlog": "gauge",
    "falbridge_metrics_database_up": "gauge",
}


def scrape(url: str, headers: dict[str, str] | None = None) -> dict[tuple[str, tuple], float]:
    response = httpx.get(url, headers=headers or {}, timeout=30)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def families(url: str) -> dict[str, str]:
    text = httpx.get(url, headers=API_HEADERS, timeout=30).text
    return {family.name: family.type for family in text_string_to_metric_families(text)}


def _cat_uri() -> str:
    from falbridge.demo import CAT

    return "data:image/png;base64," + base64.b64encode(CAT.read_bytes()).decode()


def test_a_pipeline_run_moves_the_counters(pipeline):
    url = pipeline.receiver_url + "/metrics"
    before = scrape(url, API_HEADERS)
    created = [
        httpx.post(
            pipeline.receiver_url + "/api/jobs",
            json={"endpoint_id": endpoint, "input": job_input},
            headers=API_HEADERS,
            timeout=30,
        )
        for endpoint, job_input in (
            ("fal-ai/evf-sam", {"prompt": "cat", "image_url": _cat_uri()}),
            ("fal-ai/some/model", {"n": 1}),
        )
    ]
    assert [r.status_code for r in created] == [202, 202], [r.text for r in created]
    jobs = pipeline.wait_terminal(*(r.json()["id"] for r in created), timeout=60)
    assert [j.status for j in jobs] == ["completed", "completed"]

    watched = (
        ("falbridge_jobs_submitted_total", {"endpoint": "fal-ai/evf-sam"}),
        ("falbridge_jobs_submitted_total", {"endpoint": "other"}),  # not an allowed label
        ("falbridge_jobs_terminal_total", {"endpoint": "fal-ai/evf-sam", "status": "completed"}),
        ("falbridge_jobs_terminal_total", {"endpoint": "other", "status": "completed"}),
        ("falbridge_job_duration_seconds_count", {"endpoint": "other", "status": "completed"}),
        ("falbridge_fal_submit_duration_seconds_count", {"endpoint": "fal-ai/evf-sam"}),
        ("falbridge_webhook_deliveries_total", {"outcome": "stored"}),
        ("falbridge_webhook_verification_duration_seconds_count", {}),
    )

    def moves(samples: dict) -> dict[str, float]:
        return {
            f"{name}{labels}": value(samples, name, **labels) - value(before, name, **labels)
            for name, labels in watched
        }

    after = poll_until(
        lambda: scrape(url, API_HEADERS),
        lambda samples: all(moved >= 1 for moved in moves(samples).values()),
        timeout=20,
        describe=lambda samples: f"moved by: {moves(samples)}",  # the ones still at 0 are the story
    )
    # Counts by status come from the database at scrape time.
    assert value(after, "falbridge_jobs", status="completed") == 2
    assert value(after, "falbridge_jobs", status="pending") == 0
    assert value(after, "falbridge_metrics_database_up") == 1
    # No job id in any label: bounded sets only.
    for _, labels in after:
        for _, label_value in labels:
            assert all(str(j.id) not in label_value for j in jobs)
    assert {name: kind for name, kind in families(url).items() if name in EXPECTED} == EXPECTED

    # The worker's own port tells the same story (in this process, the same files).
    port = os.environ["FALBRIDGE_WORKER_METRICS_PORT"]
    on_worker = scrape(f"http://127.0.0.1:{port}/metrics")
    assert value(on_worker, "falbridge_jobs", status="completed") == 2
    assert value(on_worker, "falbridge_jobs_submitted_total", endpoint="fal-ai/evf-sam") >= 1


def test_a_rejected_callback_is_counted_by_reason(pipeline):
    url = pipeline.receiver_url + "/metrics"
    before = scrape(url, API_HEADERS)
    answer = httpx.post(pipeline.receiver_url + "/webhooks/fal", content=b"{}", timeout=30)
    assert answer.status_code == 401
    after = scrape(url, API_HEADERS)
    for name, labels in (
        ("falbridge_webhook_deliveries_total", {"outcome": "rejected"}),
        ("falbridge_webhook_rejections_total", {"reason": "missing_headers"}),
    ):
        assert value(after, name, **labels) == value(before, name, **labels) + 1


def test_metrics_want_a_token(receiver_server, db_url):
    url = receiver_server.url + "/metrics"
    assert httpx.get(url, timeout=30).status_code == 401
    wrong = httpx.get(url, headers={"Authorization": "Bearer wrong-token-0123456789"}, timeout=30)
    assert wrong.status_code == 401
    assert wrong.json()["error"]["code"] == "unauthorized"
    assert httpx.get(url, headers=API_HEADERS, timeout=30).status_code == 200


@pytest.mark.parametrize(
    ("flag", "metrics", "expected"),
    [("1", "on", 200), ("0", "on", 401), ("1", "off", 404)],
)
def test_the_flag_opens_them(pipeline_env, db_url, flag, metrics, expected):
    cfg = config.Config.from_environ(
        {**os.environ, "FALBRIDGE_METRICS_PUBLIC": flag, "FALBRIDGE_METRICS": metrics}
    )
    server = ServerThread(create_app(cfg)).start()
    try:
        assert httpx.get(server.url + "/metrics", timeout=30).status_code == expected
    finally:
        server.stop()


def test_the_sweepers_actions_are_counted_by_kind(pipeline):
    from falbridge.config import SweepConfig
    from falbridge.models.db import transaction
    from falbridge.models.jobs import create_job
    from falbridge.worker import inline
    from falbridge.worker.sweep import sweep

    url = pipeline.receiver_url + "/metrics"
    before = scrape(url, API_HEADERS)
    with transaction() as s:  # stored, but its submit task never reached Redis
        job, _ = create_job(s, "fal-ai/some/model", {"n": 1})
    assert sweep(inline.run, SweepConfig(pending_grace_s=0)).resubmitted_pending == 1
    pipeline.wait_terminal(job.id)
    after = scrape(url, API_HEADERS)
    kind = {"kind": "resubmitted_pending"}
    assert value(after, "falbridge_sweeper_actions_total", **kind) == (
        value(before, "falbridge_sweeper_actions_total", **kind) + 1
    )


def _counted() -> dict[tuple[str, tuple], float]:
    from falbridge.worker import metrics

    body, _ = metrics.exposition()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
    }


def test_a_job_whose_files_are_stored_is_counted_terminal_once(db_url):
    # The files-stored event repeats the job's status (completed -> completed): the demo's
    # scrape counted every EVF-SAM and Florence job completed twice.
    from falbridge.models.db import transaction
    from falbridge.models.jobs import create_job, lock_job, transition
    from falbridge.models.stored_files import files_stored

    labels = {"endpoint": "fal-ai/evf-sam", "status": "completed"}
    before = _counted()
    with transaction() as s:
        job, _ = create_job(s, "fal-ai/evf-sam", {"prompt": "cat"})
    with transaction() as s:
        assert transition(s, lock_job(s, job.id), JobStatus.SUBMITTED, EventSource.SUBMIT, request_id="r-1")
    with transaction() as s:
        assert transition(s, lock_job(s, job.id), JobStatus.COMPLETED, EventSource.WEBHOOK)
    with transaction() as s:
        files_stored(s, lock_job(s, job.id))

    after = _counted()
    for name in ("falbridge_jobs_terminal_total", "falbridge_job_duration_seconds_count"):
        assert value(after, name, **labels) - value(before, name, **labels) == 1
    submitted = {"endpoint": "fal-ai/evf-sam"}
    assert (
        value(after, "falbridge_jobs_submitted_total", **submitted)
        - value(before, "falbridge_jobs_submitted_total", **submitted)
        == 1
    )


@pytest.mark.parametrize("first", [JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.IN_PROGRESS])
def test_a_job_fal_answered_by_callback_first_is_counted_submitted_once(db_url, first):
    # fal's callback can be applied before the submit's answer is recorded: the job goes
    # from pending past submitted, with the callback's request id. A pipeline run counted
    # its end and not its submit.
    from falbridge.models.db import transaction
    from falbridge.models.jobs import create_job, lock_job, transition

    submitted = {"endpoint": "other"}
    before = _counted()
    with transaction() as s:
        job, _ = create_job(s, "fal-ai/some/model", {"n": 1})
    with transaction() as s:
        assert transition(s, lock_job(s, job.id), first, EventSource.WEBHOOK, request_id="r-early")
    with transaction() as s:  # the answer, late: fills in ids, moves nothing
        assert not transition(s, lock_job(s, job.id), JobStatus.SUBMITTED, EventSource.SUBMIT)
    after = _counted()
    assert (
        value(after, "falbridge_jobs_submitted_total", **submitted)
        - value(before, "falbridge_jobs_submitted_total", **submitted)
        == 1
    )


@pytest.mark.parametrize("status", [JobStatus.FAILED, JobStatus.CANCELLED])
def test_a_job_that_never_reached_fal_is_not_counted_submitted(db_url, status):
    # Refused by fal's 4xx, failed as outcome unknown, or cancelled while pending: no
    # request id, never accepted.
    from falbridge.models.db import transaction
    from falbridge.models.jobs import create_job, lock_job, transition

    submitted = {"endpoint": "other"}
    before = _counted()
    with transaction() as s:
        job, _ = create_job(s, "fal-ai/some/model", {"n": 1})
    with transaction() as s:
        assert transition(s, lock_job(s, job.id), status, EventSource.SUBMIT)
    after = _counted()
    assert value(after, "falbridge_jobs_submitted_total", **submitted) == value(
        before, "falbridge_jobs_submitted_total", **submitted
    )
