import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from falbridge.models.db import transaction
from falbridge.models.jobs import (
    CursorError,
    JobFilters,
    create_job,
    decode_cursor,
    get_job,
    list_jobs,
    lock_job,
    transition,
)
from falbridge.models.states import EventSource, JobStatus
from falbridge.models.tables import Job, JobEvent


def test_create_job_records_pending_event(engine):
    with transaction(engine) as s:
        job, created = create_job(s, "fal-ai/evf-sam", {"prompt": "cat"}, metadata={"k": 1})
    assert created
    with transaction(engine) as s:
        loaded = get_job(s, job.id, full=True)
        assert loaded.status == "pending" and loaded.meta == {"k": 1}
        assert [(e.from_status, e.to_status, e.source) for e in loaded.events] == [(None, "pending", "api")]
        assert loaded.created_at.tzinfo is not None


def test_external_id_race_leaves_one_job(engine):
    """Eight threads create the same external_id at once: one row, everyone gets it."""
    barrier = threading.Barrier(8)

    def create(_):
        barrier.wait()
        with transaction(engine) as s:
            job, created = create_job(s, "fal-ai/x/y", {"n": 1}, external_id="order-42")
            return job.id, created

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(create, range(8)))
    assert len({job_id for job_id, _ in results}) == 1
    assert sum(created for _, created in results) == 1
    with transaction(engine) as s:
        assert s.scalar(select(func.count()).select_from(Job)) == 1
        assert s.scalar(select(func.count()).select_from(JobEvent)) == 1


def test_concurrent_terminal_transitions_apply_once(engine):
    """Completion, failure and a late in_progress race: exactly one terminal event wins."""
    with transaction(engine) as s:
        job, _ = create_job(s, "fal-ai/x/y", {})
    barrier = threading.Barrier(6)
    targets = [JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.IN_PROGRESS] * 2

    def move(target):
        barrier.wait()
        with transaction(engine) as s:
            locked = lock_job(s, job.id)
            return transition(s, locked, target, EventSource.WEBHOOK)

    with ThreadPoolExecutor(6) as pool:
        list(pool.map(move, targets))
    with transaction(engine) as s:
        final = get_job(s, job.id, full=True)
        terminal_events = [e for e in final.events if e.to_status in ("completed", "failed")]
        assert final.job_status.is_terminal
        assert len(terminal_events) == 1
        assert terminal_events[0].to_status == final.status
        assert final.completed_at is not None


def test_repeated_and_stale_events_are_noops(engine):
    with transaction(engine) as s:
        job, _ = create_job(s, "fal-ai/x/y", {})
    with transaction(engine) as s:
        j = lock_job(s, job.id)
        assert transition(s, j, JobStatus.SUBMITTED, EventSource.SUBMIT, request_id="r1")
        assert not transition(s, j, JobStatus.SUBMITTED, EventSource.SUBMIT)
        assert transition(s, j, JobStatus.COMPLETED, EventSource.WEBHOOK, result={"ok": 1})
        assert not transition(s, j, JobStatus.IN_PROGRESS, EventSource.POLL)
    with transaction(engine) as s:
        j = get_job(s, job.id, full=True)
        assert j.status == "completed" and j.request_id == "r1" and j.result == {"ok": 1}
        assert [e.to_status for e in j.events] == ["pending", "submitted", "completed"]


def _make_jobs(engine, n, base):
    with transaction(engine) as s:
        for i in range(n):
            s.add(
                Job(
                    id=uuid.uuid4(),
                    endpoint_id="fal-ai/evf-sam" if i % 3 else "fal-ai/other/x",
                    input={"i": i},
                    status="completed" if i % 2 else "pending",
                    external_id=f"ext-{i}",
                    created_at=base + timedelta(seconds=i // 4),
                )
            )


def test_keyset_pagination_is_exact_across_pages(engine):
    base = datetime(2026, 1, 1, tzinfo=UTC)
    _make_jobs(engine, 103, base)  # four jobs share each created_at: ties broken by id
    with transaction(engine) as s:
        everything = [j.id for j in s.scalars(select(Job).order_by(Job.created_at.desc(), Job.id.desc()))]
        seen, cursor = [], None
        while True:
            page, cursor = list_jobs(s, JobFilters(), limit=10, cursor=cursor)
            seen += [j.id for j in page]
            if cursor is None:
                break
    assert seen == everything


@pytest.mark.parametrize(
    "filters,expected",
    [
        (JobFilters(status="completed"), lambda i: i % 2 == 1),
        (JobFilters(endpoint_id="fal-ai/other/x"), lambda i: i % 3 == 0),
        (JobFilters(external_id="ext-7"), lambda i: i == 7),
        (
            JobFilters(
                created_after=datetime(2026, 1, 1, 0, 0, 5, tzinfo=UTC),
                created_before=datetime(2026, 1, 1, 0, 0, 9, tzinfo=UTC),
            ),
            lambda i: 5 <= i // 4 < 9,
        ),
        (JobFilters(status="pending", endpoint_id="fal-ai/evf-sam"), lambda i: i % 2 == 0 and i % 3 != 0),
    ],
)
def test_filters_across_pages(engine, filters, expected):
    _make_jobs(engine, 60, datetime(2026, 1, 1, tzinfo=UTC))
    with transaction(engine) as s:
        got, cursor = [], None
        while True:
            page, cursor = list_jobs(s, filters, limit=7, cursor=cursor)
            got += [int(j.external_id.removeprefix("ext-")) for j in page]
            if cursor is None:
                break
    assert sorted(got) == [i for i in range(60) if expected(i)]
    assert len(got) == len(set(got))


def test_listing_reads_summary_columns_only(engine):
    """A page never loads inputs or results: those can be megabytes each."""
    with transaction(engine) as s:
        s.add(
            Job(
                id=uuid.uuid4(),
                endpoint_id="fal-ai/x/y",
                input={"image_url": "data:" + "A" * 100_000},
                result={"big": "B" * 100_000},
                status="completed",
            )
        )
    with transaction(engine) as s:
        (row,), _ = list_jobs(s, JobFilters())
    assert row.status == "completed" and not hasattr(row, "input") and not hasattr(row, "result")


@pytest.mark.parametrize(
    "bad", ["", "not-base64!", "bnVsbA", "WyJ4IiwgInkiXQ", "WyIyMDI2LTAxLTAxVDAwOjAwOjAwKzAwOjAwIiwgNV0"]
)
def test_bad_cursor_is_rejected(bad):
    with pytest.raises(CursorError):
        decode_cursor(bad)


def test_limit_bounds(engine):
    with transaction(engine) as s:
        for limit in (0, 501):
            with pytest.raises(ValueError):
                list_jobs(s, JobFilters(), limit=limit)
