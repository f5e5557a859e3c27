"""The sweeper re-drives what fell through the cracks; each case is made real with a
sandbox fault or a genuinely lost step, then one inline sweep must finish the job."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta

import pytest
from sqlalchemy import select

from falbridge.config import SweepConfig
from falbridge.devstack.processes import wait_http
from falbridge.models.db import transaction
from falbridge.models.jobs import create_job
from falbridge.models.tables import Job, WebhookDelivery, utcnow
from falbridge.worker import inline
from falbridge.worker.actions import submit
from falbridge.worker.fal import QueueClient
from falbridge.worker.submit import record_submission
from falbridge.worker.sweep import sweep
from tests.plugins.db import free_port
from tests.plugins.pipeline import TEST_FAL_KEY
from tests.webhooks.test_pipeline import _cat_uri

NOW = SweepConfig(
    pending_grace_s=0, delivery_grace_s=0, silent_after_s=0, poll_every_s=0, outcome_unknown_grace_s=0
)


def test_dropped_webhook_is_recovered_by_polling(pipeline):
    pipeline.sandbox.set_faults(drop=1.0)
    job, _ = submit("fal-ai/evf-sam", {"prompt": "cat", "image_url": _cat_uri()})
    pipeline.wait_status(job.id, "submitted")
    pipeline.sandbox.wait_idle(timeout=10)
    report = sweep(inline.run, NOW)
    assert report.polled == 1
    [job] = pipeline.wait_terminal(job.id)
    assert job.status == "completed" and job.files[0].path == "image"
    assert job.events[-1].source == "poll" and job.poll_attempts == 1


def test_lost_enqueue_is_resubmitted(pipeline):
    with transaction() as s:  # stored, but its submit task never reached Redis
        job, _ = create_job(s, "fal-ai/some/model", {"n": 1})
    assert sweep(inline.run, NOW).resubmitted_pending == 1
    [job] = pipeline.wait_terminal(job.id)
    assert job.status == "completed"
    assert len(pipeline.sandbox.ground_truth()["requests"]) == 1


def test_worker_killed_mid_submit_is_not_reposted(pipeline):
    with transaction() as s:  # a worker claimed it, then died before recording anything
        job, _ = create_job(s, "fal-ai/some/model", {"n": 2})
        job.submit_lease_until = utcnow() - timedelta(seconds=1)
        job.submit_attempts = 1
    sweep(inline.run, SweepConfig(pending_grace_s=0, outcome_unknown_grace_s=3600))
    with transaction() as s:
        assert s.get(Job, job.id).status == "outcome_unknown"
    assert pipeline.sandbox.ground_truth()["requests"] == []


@pytest.mark.parametrize("policy,final,requests", [("resubmit", "completed", 2), ("fail", "failed", 1)])
def test_outcome_unknown_policy(pipeline, policy, final, requests):
    pipeline.sandbox.set_faults(submit_response_lost=1.0, drop=1.0)
    job, _ = submit("fal-ai/some/model", {"n": 3})
    pipeline.wait_status(job.id, "outcome_unknown")
    pipeline.sandbox.set_faults(submit_response_lost=0.0, drop=0.0)
    settings = SweepConfig(outcome_unknown_grace_s=0, outcome_unknown_policy=policy)
    sweep(inline.run, settings)
    [job] = pipeline.wait_terminal(job.id)
    pipeline.sandbox.wait_idle(timeout=10)
    assert job.status == final
    # Resubmitting is a double submission at fal: the ground truth shows both.
    assert len(pipeline.sandbox.ground_truth()["requests"]) == requests
    if policy == "fail":
        assert job.error_type == "submit_outcome_unknown"
    else:
        assert job.resubmitted_at is not None and job.submit_attempts == 2
        sweep(inline.run, settings)  # never a second resubmission
        assert len(pipeline.sandbox.ground_truth()["requests"]) == 2


@pytest.fixture
def outage_receiver(pipeline, db_url, sandbox_server):
    """The real receiver as its own gunicorn process, with Redis unreachable."""
    port = free_port()
    env = dict(
        os.environ,
        REDIS_URL="redis://127.0.0.1:1/0",
        DATABASE_URL=db_url,
        FAL_JWKS_URL=f"{sandbox_server.url}/.well-known/jwks.json",
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "falbridge", "serve", "--port", str(port), "--workers", "1"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/healthz", proc)
    yield url
    proc.terminate()
    proc.wait(10)


def test_delivery_stored_during_broker_outage_is_processed_by_the_sweeper(pipeline, outage_receiver):
    with transaction() as s:
        job, _ = create_job(s, "fal-ai/some/model", {"n": 4})
        job_id = job.id
    with QueueClient(pipeline.sandbox.url, TEST_FAL_KEY) as client:
        sub = client.submit(
            "fal-ai/some/model", {"n": 4}, webhook_url=f"{outage_receiver}/webhooks/fal?job={job_id}"
        )
    record_submission(job_id, sub)
    pipeline.sandbox.wait_idle(timeout=10)
    [truth] = pipeline.sandbox.ground_truth()["requests"]
    assert [d["http_status"] for d in truth["deliveries"]] == [200]  # stored, so acknowledged
    with transaction() as s:
        [delivery] = s.scalars(select(WebhookDelivery)).all()
        assert delivery.verified and delivery.processed_at is None
    assert sweep(inline.run, NOW).redriven_deliveries == 1
    with transaction() as s:
        job = s.get(Job, job_id)
        assert job.status == "completed" and job.request_id == sub.request_id
