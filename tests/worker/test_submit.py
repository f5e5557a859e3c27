"""Submit outcomes end to end: retryable, final-after-retries, outcome unknown, cancel."""

from __future__ import annotations

from falbridge.models.db import transaction
from falbridge.models.jobs import create_job
from falbridge.models.tables import Job
from falbridge.worker import submit as submit_step
from falbridge.worker.actions import cancel, submit
from tests.plugins.waiting import poll_until
from tests.webhooks.test_pipeline import _cat_uri


def test_lost_submit_response_is_never_reposted(pipeline):
    """fal took the job but we never heard back: outcome_unknown, one request at fal, and the
    callback (our job id rides in the webhook URL) still completes the job."""
    pipeline.sandbox.set_faults(submit_response_lost=1.0)
    job, _ = submit("fal-ai/evf-sam", {"prompt": "cat", "image_url": _cat_uri()})
    [job] = pipeline.wait_terminal(job.id)
    pipeline.sandbox.wait_idle(timeout=10)
    truth = pipeline.sandbox.ground_truth()["requests"]
    assert len(truth) == 1 and truth[0]["submit_response_lost"]
    assert job.status == "completed" and job.request_id == truth[0]["request_id"]
    assert [e.to_status for e in job.events] == ["pending", "outcome_unknown", "completed"]
    assert job.submit_attempts == 1


def test_lost_submit_response_without_callback_waits_in_outcome_unknown(pipeline):
    pipeline.sandbox.set_faults(submit_response_lost=1.0, drop=1.0)
    job, _ = submit("fal-ai/some/model", {"x": 1})
    job = pipeline.wait_status(job.id, "outcome_unknown")
    pipeline.sandbox.wait_idle(timeout=10)
    assert len(pipeline.sandbox.ground_truth()["requests"]) == 1
    with transaction() as s:
        assert s.get(Job, job.id).status == "outcome_unknown"


def test_retryable_submit_errors_are_retried_until_fal_accepts(pipeline):
    pipeline.sandbox.set_faults(submit_429=1.0, retry_after_s=0.2)
    job, _ = submit("fal-ai/some/model", {"x": 2})
    poll_until(lambda: pipeline.sandbox.ground_truth()["rejected_submits"], bool, timeout=20.0)
    pipeline.sandbox.set_faults(submit_429=0.0)
    [job] = pipeline.wait_terminal(job.id)
    truth = pipeline.sandbox.ground_truth()
    assert job.status == "completed"
    assert len(truth["requests"]) == 1 and len(truth["rejected_submits"]) >= 1
    assert job.submit_attempts == len(truth["rejected_submits"]) + 1


def test_retryable_errors_exhausted_fail_the_job(pipeline):
    pipeline.sandbox.set_faults(submit_5xx=1.0, submit_5xx_status=503)
    job, _ = submit("fal-ai/some/model", {"x": 3})
    [job] = pipeline.wait_terminal(job.id, timeout=30)
    assert job.status == "failed" and job.error_type == "submit_retries_exhausted"
    assert pipeline.sandbox.ground_truth()["requests"] == []
    assert job.submit_attempts == 4  # the first try and FALBRIDGE_SUBMIT_MAX_RETRIES=3 retries


def test_cancel_a_running_job_ends_cancelled(pipeline):
    pipeline.sandbox.set_config(latency_s=3.0)
    try:
        job, _ = submit("fal-ai/evf-sam", {"prompt": "cat", "image_url": _cat_uri()})
        pipeline.wait_status(job.id, "submitted")
        _, outcome = cancel(job.id)
        assert outcome == "cancel requested"
        [job] = pipeline.wait_terminal(job.id)
    finally:
        pipeline.sandbox.set_config(latency_s=0.01)
    assert job.status == "cancelled" and job.error_type == "client_cancelled"
    assert job.error == "cancelled at fal" and job.cancel_requested_at is not None


def test_cancel_before_submit_never_reaches_fal(pipeline):
    # A job whose submit task was never enqueued (as when Redis was down at the time).
    with transaction() as s:
        job, _ = create_job(s, "fal-ai/some/model", {"x": 4})
    _, outcome = cancel(job.id)
    assert outcome == "cancelled"
    assert submit_step.submit(job.id).outcome is submit_step.Submitted.NOT_PENDING  # a late submit: nothing
    with transaction() as s:
        assert s.get(Job, job.id).status == "cancelled"
    assert pipeline.sandbox.ground_truth()["requests"] == []
