"""Listing the history: keyset pages, filters, summary columns only, cursors, limits."""

import dataclasses
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from falbridge.models.db import transaction
from falbridge.models.listing import (
    CursorError,
    JobFilters,
    decode_cursor,
    encode_cursor,
    file_counts,
    list_jobs,
)
from falbridge.models.tables import Job, ResultFile


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
                    meta={"tier": i % 5},
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
        (JobFilters(metadata=(("tier", 3),)), lambda i: i % 5 == 3),
        (JobFilters(status="completed", metadata=(("tier", 1),)), lambda i: i % 2 == 1 and i % 5 == 1),
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


@pytest.mark.parametrize("limit", [1, 5, 500])
def test_a_last_page_that_is_exactly_full_has_no_next_cursor(engine, limit):
    _make_jobs(engine, limit, datetime(2026, 1, 1, tzinfo=UTC))
    with transaction(engine) as s:
        page, cursor = list_jobs(s, JobFilters(), limit=limit)
        assert len(page) == limit and cursor is None
    # One job more, older than the rest: the page has a next one, holding exactly that job.
    with transaction(engine) as s:
        s.add(Job(endpoint_id="fal-ai/x/y", input={}, created_at=datetime(2025, 1, 1, tzinfo=UTC)))
    with transaction(engine) as s:
        page, cursor = list_jobs(s, JobFilters(), limit=limit)
        assert len(page) == limit and cursor is not None
        rest, after = list_jobs(s, JobFilters(), limit=limit, cursor=cursor)
        assert [row.endpoint_id for row in rest] == ["fal-ai/x/y"] and after is None


def test_a_page_holds_50_jobs_unless_asked_otherwise(engine):
    _make_jobs(engine, 51, datetime(2026, 1, 1, tzinfo=UTC))
    with transaction(engine) as s:
        page, cursor = list_jobs(s, JobFilters())
        assert len(page) == 50 and cursor is not None
        with pytest.raises(TypeError):
            list_jobs(s, JobFilters(), 10)  # type: ignore[misc]  # limit and cursor go by name


def test_filters_are_a_value(engine):
    filters = JobFilters(status="failed", metadata=(("customer", 42),))
    assert filters == JobFilters(status="failed", metadata=(("customer", 42),))
    assert hash(filters) == hash(JobFilters(status="failed", metadata=(("customer", 42),)))
    with pytest.raises(dataclasses.FrozenInstanceError):
        filters.status = "completed"  # type: ignore[misc]


def test_file_counts_are_per_job_and_leave_out_jobs_without_files(engine):
    _make_jobs(engine, 3, datetime(2026, 1, 1, tzinfo=UTC))
    with transaction(engine) as s:
        two, one, none = s.scalars(select(Job.id).order_by(Job.external_id)).all()
        for job_id, paths in ((two, ["images[0]", "images[1]"]), (one, ["image"])):
            for path in paths:
                s.add(ResultFile(job_id=job_id, path=path, url=f"https://cdn.example/{path}"))
    with transaction(engine) as s:
        assert file_counts(s, [two, one, none]) == {two: 2, one: 1}
        assert file_counts(s, [one]) == {one: 1} and file_counts(s, []) == {}


@pytest.mark.parametrize("microsecond", [0, 1, 123456])
def test_a_cursor_of_any_length_reads_back(engine, microsecond):
    at = datetime(2026, 1, 1, 12, 30, tzinfo=UTC).replace(microsecond=microsecond)
    for job_id in (uuid.UUID(int=0), uuid.uuid4()):
        row = Job(id=job_id, created_at=at)
        assert decode_cursor(encode_cursor(row)) == (at, job_id)
