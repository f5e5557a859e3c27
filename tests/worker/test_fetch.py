"""Fetching a result fal holds but did not send (worker/fetch.py): when there is nothing to
fetch, and what a refusal of the result GET that is not a 404 makes of the job."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import func, inspect, select

from falbridge.models.db import transaction
from falbridge.models.jobs import create_job
from falbridge.models.tables import Job, JobEvent, WebhookDelivery
from falbridge.worker.actions import submit
from falbridge.worker.fetch import FetchOutcome, fetch_result
from tests.webhooks.test_pipeline import _cat_uri


def _stored(job_id: uuid.UUID) -> dict[str, Any]:
    """Every column of the job's row, and how many events it has."""
    with transaction() as s:
        job = s.get(Job, job_id)
        assert job is not None
        row = {attr.key: getattr(job, attr.key) for attr in inspect(Job).column_attrs}
        row["events"] = s.scalar(select(func.count()).select_from(JobEvent).where(JobEvent.job_id == job_id))
        return row


@pytest.mark.usefixtures("db_url")
def test_a_well_formed_id_naming_no_job_has_nothing_to_fetch():
    assert fetch_result(uuid.uuid4()) is FetchOutcome.NOTHING_TO_FETCH
    assert fetch_result(str(uuid.uuid4())) is FetchOutcome.NOTHING_TO_FETCH


@pytest.mark.usefixtures("db_url")
def test_a_malformed_id_has_nothing_to_fetch():
    assert fetch_result("not-a-job-id") is FetchOutcome.NOTHING_TO_FETCH


@pytest.mark.usefixtures("db_url")
def test_a_job_fal_never_accepted_has_nothing_to_fetch_and_stays_as_it_was():
    with transaction() as s:
        job, _ = create_job(s, "fal-ai/evf-sam", {"prompt": "cat"})
        job_id = job.id
    before = _stored(job_id)
    assert before["request_id"] is None

    assert fetch_result(job_id) is FetchOutcome.NOTHING_TO_FETCH
    assert _stored(job_id) == before


# A refusal on either side of 404 (classify reads a bare 403 or 410 on the result as final):
# the result cannot be had, but fal's retention window has nothing to do with it.
@pytest.mark.parametrize("status", [403, 410])
def test_a_final_refusal_of_the_result_other_than_404_ends_failed_result_unavailable(pipeline, status):
    pipeline.sandbox.set_faults(payload_error=1.0, result_error=1.0, result_error_status=status)
    job, _ = submit("fal-ai/evf-sam", {"prompt": "cat", "image_url": _cat_uri()})

    [final] = pipeline.wait_terminal(job.id)

    assert (final.status, final.error_type) == ("failed", "result_unavailable")
    assert final.error.startswith("result unavailable at fal") and f"HTTP {status}" in final.error
    assert final.result is None


def test_a_result_holding_a_nul_ends_failed_invalid_result_not_retried_for_ever(pipeline):
    # fal signs and sends it; PostgreSQL stores no NUL. The callback is applied as one whose
    # payload fal could not send (the result is fetched), and the fetch refuses it for good.
    pipeline.sandbox.set_faults(unstorable_result=1.0)
    job, _ = submit("fal-ai/evf-sam", {"prompt": "cat", "image_url": _cat_uri()})

    [final] = pipeline.wait_terminal(job.id)

    assert (final.status, final.error_type) == ("failed", "invalid_result")
    assert final.error == "fal's result contains a NUL character, which cannot be stored (at caption)"
    assert final.result is None
    with transaction() as s:
        [delivery] = s.scalars(select(WebhookDelivery).where(WebhookDelivery.job_id == job.id)).all()
        assert (delivery.outcome, delivery.processing_error) == ("result_fetch_needed", None)


@pytest.mark.usefixtures("db_url")
def test_a_finished_job_whose_result_is_not_pending_is_not_fetched_again():
    with transaction() as s:
        job, _ = create_job(s, "fal-ai/evf-sam", {"prompt": "cat"})
        job.request_id, job.status, job.result_pending = "req-done", "completed", False
        job_id = job.id
    before = _stored(job_id)

    assert fetch_result(job_id) is FetchOutcome.ALREADY_TERMINAL
    assert _stored(job_id) == before
