"""A job's final outcome (worker/apply/outcome.py), whoever learned it: applied to real
rows, then read back with its history and files."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import func, select

from falbridge.models.db import transaction
from falbridge.models.jobs import create_job, lock_job
from falbridge.models.states import EventSource
from falbridge.models.tables import Job, JobEvent, ResultFile
from falbridge.worker.apply.outcome import (
    cancel_unsubmitted,
    complete,
    error_fields_from_body,
    fail,
    fail_job,
)
from tests.plugins.rows import row

OUTPUT = {
    "images": [
        {"url": "https://cdn.example/a.png", "content_type": "image/png"},
        {"url": "https://cdn.example/b.png", "file_size": 9},
    ]
}

pytestmark = pytest.mark.usefixtures("db_url")


def _job(status: str = "submitted", **fields) -> uuid.UUID:
    with transaction() as s:
        job, _ = create_job(s, "fal-ai/some/model", {"n": 1})
        job.status = status
        for name, value in fields.items():
            setattr(job, name, value)
        return job.id


def _last_event(job_id: uuid.UUID) -> tuple[str | None, str, str, dict | None]:
    with transaction() as s:
        e = s.scalars(select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.id.desc())).first()
        return (e.from_status, e.to_status, e.source, e.detail)


def _files(job_id: uuid.UUID) -> list[str]:
    with transaction() as s:
        return list(
            s.scalars(select(ResultFile.path).where(ResultFile.job_id == job_id).order_by(ResultFile.id))
        )


def test_complete_stores_the_result_its_files_and_clears_result_pending():
    job_id = _job(result_pending=True)
    with transaction() as s:
        assert complete(s, lock_job(s, job_id), OUTPUT, EventSource.POLL, {"why": "test"}) is True
    job = row(Job, job_id)
    assert (job.status, job.result, job.result_pending) == ("completed", OUTPUT, False)
    assert job.completed_at is not None
    assert _files(job_id) == ["images[0]", "images[1]"]
    assert _last_event(job_id) == ("submitted", "completed", "poll", {"why": "test"})


def test_a_second_outcome_for_a_finished_job_changes_nothing():
    job_id = _job()
    with transaction() as s:
        complete(s, lock_job(s, job_id), OUTPUT, EventSource.WEBHOOK)
    with transaction() as s:
        job = lock_job(s, job_id)
        assert (
            complete(
                s, job, {"images": [{"url": "https://cdn.example/c.png", "file_size": 1}]}, EventSource.POLL
            )
            is False
        )
        assert fail(s, job, EventSource.POLL, error="late") is False
    job = row(Job, job_id)
    assert (job.status, job.result, job.error) == ("completed", OUTPUT, None)
    assert _files(job_id) == ["images[0]", "images[1]"]


def test_fail_records_the_error_and_clears_result_pending():
    job_id = _job(result_pending=True)
    with transaction() as s:
        failed = fail(
            s,
            lock_job(s, job_id),
            EventSource.WEBHOOK,
            error="x" * 5000,
            error_type="runner_server_error",
            error_detail={"detail": "boom"},
            detail={"delivery_id": 3},
        )
        assert failed is True
    job = row(Job, job_id)
    assert (job.status, job.error_type, job.error_detail, job.result_pending) == (
        "failed",
        "runner_server_error",
        {"detail": "boom"},
        False,
    )
    assert job.error == "x" * 4000
    assert _last_event(job_id) == ("submitted", "failed", "webhook", {"delivery_id": 3})


def test_a_client_cancelled_error_ends_the_job_cancelled_at_fal_keeping_fals_words():
    job_id = _job(status="in_progress")
    with transaction() as s:
        assert fail(
            s,
            lock_job(s, job_id),
            EventSource.WEBHOOK,
            error="Invalid status code: 499",
            error_type="client_cancelled",
        )
    job = row(Job, job_id)
    assert (job.status, job.error, job.error_type, job.error_detail) == (
        "cancelled",
        "cancelled at fal",
        "client_cancelled",
        "Invalid status code: 499",  # fal gave no detail: its message is kept as one
    )
    assert _last_event(job_id) == ("in_progress", "cancelled", "webhook", None)
    detailed = _job(status="in_progress")
    with transaction() as s:
        fail(
            s,
            lock_job(s, detailed),
            EventSource.POLL,
            error="x",
            error_type="client_cancelled",
            error_detail=[1],
        )
    assert (row(Job, detailed).error, row(Job, detailed).error_detail) == ("cancelled at fal", [1])


def test_fail_job_fails_in_its_own_transaction_and_says_when_it_could_not():
    job_id = _job()
    assert fail_job(job_id, EventSource.POLL, error="gone", error_type="result_unavailable", error_detail=[1])
    job = row(Job, job_id)
    assert (job.status, job.error, job.error_type, job.error_detail) == (
        "failed",
        "gone",
        "result_unavailable",
        [1],
    )
    assert _last_event(job_id)[2] == "poll"
    assert fail_job(job_id, EventSource.POLL, error="again") is False  # already final
    assert fail_job(uuid.uuid4(), EventSource.POLL, error="nobody") is False
    with transaction() as s:
        assert s.scalar(select(func.count()).select_from(JobEvent).where(JobEvent.to_status == "failed")) == 1


def test_cancel_unsubmitted_cancels_a_pending_job_here_and_now():
    job_id = _job(status="pending")
    with transaction() as s:
        assert cancel_unsubmitted(s, lock_job(s, job_id)) is True
    job = row(Job, job_id)
    assert (job.status, job.error, job.error_type) == (
        "cancelled",
        "cancelled before it was submitted",
        "client_cancelled",
    )
    assert _last_event(job_id) == ("pending", "cancelled", "cancel", None)


@pytest.mark.parametrize(
    "body, expected",
    [
        # A model's own error: a detail list, the first entry's type names it.
        (
            {"detail": [{"loc": ["body"], "msg": "m", "type": "file_download_error"}, "and more"]},
            (
                "file_download_error",
                [{"loc": ["body"], "msg": "m", "type": "file_download_error"}, "and more"],
            ),
        ),
        ({"detail": ["text first", {"type": "x"}]}, ("validation_error", ["text first", {"type": "x"}])),
        ({"detail": [{"msg": "no type"}]}, ("validation_error", [{"msg": "no type"}])),
        ({"detail": [{"type": 7}]}, ("validation_error", [{"type": 7}])),
        ({"detail": ["not an object"]}, ("validation_error", ["not an object"])),
        ({"detail": []}, ("validation_error", [])),
        # fal's request errors: a text detail and an error_type.
        (
            {"detail": "Runner failed", "error_type": "runner_server_error"},
            ("runner_server_error", "Runner failed"),
        ),
        (
            {"detail": [{"type": "from_detail"}], "error_type": "from_body"},
            ("from_body", [{"type": "from_detail"}]),
        ),
        ({"detail": "text", "error_type": 5}, (None, "text")),
        ({"detail": None}, (None, None)),
        # Anything else is kept whole.
        ({"unexpected": 1}, (None, {"unexpected": 1})),
        ("plain text", (None, "plain text")),
        (None, (None, None)),
    ],
)
def test_error_fields_from_a_fal_error_body(body, expected):
    assert error_fields_from_body(body) == expected


def test_the_error_fields_are_passed_by_name():
    # error and error_type are both text: passed by position they could be swapped.
    job_id = _job()
    with transaction() as s, pytest.raises(TypeError):
        fail(s, lock_job(s, job_id), EventSource.POLL, "an error")
    with pytest.raises(TypeError):
        fail_job(job_id, EventSource.POLL, "an error")
    assert row(Job, job_id).status == "submitted"
