"""Listing the history: keyset pages, filters, summary columns only, cursors, limits."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from falbridge.models.db import transaction
from falbridge.models.listing import CursorError, JobFilters, decode_cursor, list_jobs
from falbridge.models.tables import Job


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
