"""The changes feed (models.feed) and metadata filters, on both databases: what moves
updated_at, the order, the settle delay, the index, and a consumer that keeps up with
concurrent writers."""

from __future__ import annotations

import random
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from sqlalchemy import select, text, update

from falbridge.models.clock import db_now
from falbridge.models.db import transaction
from falbridge.models.feed import changed_since, jobs_page
from falbridge.models.jobs import add_result_files, create_job, get_job, lock_job, transition
from falbridge.models.listing import CursorError, JobFilters, list_jobs
from falbridge.models.states import EventSource, JobStatus
from falbridge.models.tables import Job, utcnow
from tests.plugins.waiting import poll_until

EVERYTHING = JobFilters()
LONG_AGO = utcnow() - timedelta(days=1)
FLOW = (JobStatus.SUBMITTED, JobStatus.IN_PROGRESS, JobStatus.COMPLETED)


def _new_jobs(engine, count: int, **metadata) -> list[uuid.UUID]:
    with transaction(engine) as s:
        return [create_job(s, "fal-ai/x/y", {"n": n}, metadata=metadata or None)[0].id for n in range(count)]


def _move(engine, job_id: uuid.UUID, status: JobStatus, **fields) -> None:
    with transaction(engine) as s:
        assert transition(s, lock_job(s, job_id), status, EventSource.WEBHOOK, **fields)


def _stamps(engine, job_id: uuid.UUID) -> tuple:
    with transaction(engine) as s:
        return s.execute(select(Job.updated_at, Job.touched_at).where(Job.id == job_id)).one()


def _once_the_clock_passes(engine, stamp) -> None:
    """Wait until the database's clock reads later than `stamp`: SQLite's moves by the
    millisecond, and two quick writes may share one, which says nothing of what moved."""
    with transaction(engine) as s:
        poll_until(lambda: s.scalar(select(db_now())), lambda now: now > stamp)


def _feed(engine, cursor=None, after=LONG_AGO, limit=50, settle_s=0.0, filters=EVERYTHING):
    with transaction(engine) as s:
        rows, next_cursor = changed_since(
            s, filters, updated_after=None if cursor else after, cursor=cursor, limit=limit, settle_s=settle_s
        )
        return [(row.id, row.status, row.updated_at) for row in rows], next_cursor


def test_updated_at_moves_with_what_a_consumer_sees_and_nothing_else(engine):
    [job_id] = _new_jobs(engine, 1)
    created, touched = _stamps(engine, job_id)
    _once_the_clock_passes(engine, max(created, touched))
    with transaction(engine) as s:  # a submit lease, a webhook counted, a poll recorded
        job = lock_job(s, job_id)
        job.submit_lease_until = utcnow() + timedelta(seconds=60)
        job.webhook_count += 1
    with transaction(engine) as s:
        s.execute(update(Job).where(Job.id == job_id).values(last_polled_at=utcnow(), poll_attempts=1))
    updated, touched_after = _stamps(engine, job_id)
    assert updated == created and touched_after > touched  # the sweeper saw activity; the feed nothing
    _once_the_clock_passes(engine, touched_after)
    _move(engine, job_id, JobStatus.SUBMITTED, request_id="r-1")
    submitted, _ = _stamps(engine, job_id)
    _once_the_clock_passes(engine, submitted)
    with transaction(engine) as s:
        assert transition(s, lock_job(s, job_id), JobStatus.COMPLETED, EventSource.WEBHOOK, result={"k": 1})
        add_result_files(s, job_id, [{"path": "image", "url": "https://x/y.png"}])
    completed, _ = _stamps(engine, job_id)
    assert created < submitted < completed


def test_the_feed_is_oldest_change_first_and_the_cursor_resumes_after_the_last(engine):
    first, second, third = _new_jobs(engine, 3)
    _move(engine, first, JobStatus.SUBMITTED)  # first changed last
    page, cursor = _feed(engine, limit=2)
    # Changed within the same millisecond (SQLite's clock), stamps tie: id decides. Even
    # the move of `first` can share its stamp with the creations.
    stamped = {j: _stamps(engine, j)[0] for j in (first, second, third)}
    assert stamped[first] >= max(stamped[second], stamped[third])  # changed last, or tied
    in_order = sorted(stamped, key=lambda j: (stamped[j], j))
    assert [row[0] for row in page] == in_order[:2]
    rest, end = _feed(engine, cursor=cursor)
    assert [row[0] for row in rest] == in_order[2:]
    statuses = {row[0]: row[1] for row in page + rest}
    assert statuses == {first: "submitted", second: "pending", third: "pending"}
    assert _feed(engine, cursor=end) == ([], end)  # caught up: the same place to come back to
    _move(engine, second, JobStatus.SUBMITTED)
    assert [row[0] for row in _feed(engine, cursor=end)[0]] == [second]


def test_changes_younger_than_the_settle_delay_wait(engine):
    _new_jobs(engine, 2)
    held, cursor = _feed(engine, settle_s=3600)
    assert held == [] and _feed(engine, cursor=cursor)[0] != []  # nothing skipped: shown later


def test_a_listing_cursor_is_not_a_feed_cursor(engine):
    _new_jobs(engine, 3)
    with transaction(engine) as s:
        _, listing_cursor = list_jobs(s, EVERYTHING, limit=1)
        with pytest.raises(CursorError):
            jobs_page(s, EVERYTHING, cursor=listing_cursor, updated_after=LONG_AGO)
        _, feed_cursor = jobs_page(s, EVERYTHING, updated_after=LONG_AGO, limit=1, settle_s=0)
        assert len(jobs_page(s, EVERYTHING, cursor=feed_cursor, settle_s=0)[0]) == 2  # the feed, resumed


@pytest.mark.parametrize(
    ("value", "matches"),
    [
        ("gold", {"tier-gold"}),
        (7, {"seven", "seven-float"}),
        ("7", {"seven-text"}),
        (True, {"yes"}),
        (False, {"no"}),
        (None, {"null"}),
    ],
)
def test_metadata_filters_compare_json_values(engine, value, matches):
    stored = {
        "tier-gold": "gold",
        "seven": 7,
        "seven-float": 7.0,
        "seven-text": "7",
        "yes": True,
        "no": False,
        "null": None,
    }
    with transaction(engine) as s:
        for name, v in stored.items():
            create_job(s, "fal-ai/x/y", {}, external_id=name, metadata={"k": v, "other": 1})
        create_job(s, "fal-ai/x/y", {}, external_id="no-key", metadata={"other": 1})
        create_job(s, "fal-ai/x/y", {}, external_id="no-metadata")
    with transaction(engine) as s:
        rows, _ = list_jobs(s, JobFilters(metadata=(("k", value),)), limit=50)
        assert {row.external_id for row in rows} == matches
        both = JobFilters(metadata=(("k", value), ("other", 1)))
        assert {row.external_id for row in list_jobs(s, both, limit=50)[0]} == matches
        rows, _ = changed_since(s, JobFilters(metadata=(("k", value),)), updated_after=LONG_AGO, settle_s=0)
        assert {row.external_id for row in rows} == matches


def _plan(engine, sql: str) -> str:
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("SET enable_seqscan = off"))  # a few rows: judge the plan, not the size
            return "\n".join(conn.execute(text(f"EXPLAIN {sql}")).scalars())
        return "\n".join(str(row[-1]) for row in conn.execute(text(f"EXPLAIN QUERY PLAN {sql}")))


def test_the_feed_and_metadata_filters_use_their_indexes(engine):
    _new_jobs(engine, 20, customer="acme")
    after = LONG_AGO.strftime("%Y-%m-%d %H:%M:%S")
    feed_sql = f"SELECT id FROM jobs WHERE updated_at > '{after}' ORDER BY updated_at, id LIMIT 50"
    assert "ix_jobs_updated_at_id" in _plan(engine, feed_sql)
    if engine.dialect.name == "postgresql":
        metadata_sql = """SELECT id FROM jobs WHERE metadata @> '{"customer": "acme"}'"""
        assert "ix_jobs_metadata" in _plan(engine, metadata_sql)


def test_without_the_settle_delay_a_late_commit_is_skipped(engine):
    """Why the delay exists (PostgreSQL: SQLite's writers take turns, so stamps there are
    in commit order): a change stamped before another but committed after it."""
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite serialises writers")
    early, late = _new_jobs(engine, 2)
    start = _feed(engine)[1]
    stamped, release = threading.Event(), threading.Event()

    def slow_writer() -> None:
        with transaction(engine) as s:
            assert transition(s, lock_job(s, early), JobStatus.SUBMITTED, EventSource.WEBHOOK)
            stamped.set()
            release.wait(10)

    writer = threading.Thread(target=slow_writer)
    writer.start()
    stamped.wait(10)
    _move(engine, late, JobStatus.SUBMITTED)  # stamped after, committed first
    eager, eager_cursor = _feed(engine, cursor=start, settle_s=0)
    patient, patient_cursor = _feed(engine, cursor=start, settle_s=3)
    release.set()
    writer.join()
    assert [row[0] for row in eager] == [late] and _feed(engine, cursor=eager_cursor)[0] == []  # skipped
    assert patient == []
    shown = poll_until(
        lambda: _feed(engine, cursor=patient_cursor, settle_s=3)[0], lambda rows: len(rows) == 2, timeout=10
    )
    assert [row[0] for row in shown] == [early, late]


@pytest.mark.timeout(120)
def test_a_consumer_following_the_cursor_sees_every_jobs_latest_state(engine):
    """Writers move 60 jobs through the flow in random order on 6 threads, some holding
    their transaction open a moment after stamping; a consumer follows the feed all along.
    Once the writers stop, it must hold each job's final state and updated_at."""
    job_ids = _new_jobs(engine, 60)
    seen: dict[uuid.UUID, tuple] = {}
    done = threading.Event()
    cursor = [None]

    def consume() -> None:
        while not done.is_set():
            page, cursor[0] = _feed(engine, cursor=cursor[0], limit=7, settle_s=1.0)
            for job_id, status, updated_at in page:
                seen[job_id] = (status, updated_at)

    steps = [(job_id, status) for job_id in job_ids for status in FLOW]
    random.Random(7).shuffle(steps)  # out of order on purpose: stale steps are no-ops

    def write(step) -> None:
        job_id, status = step
        with transaction(engine) as s:
            job = lock_job(s, job_id)
            transition(s, job, status, EventSource.WEBHOOK)
            s.execute(select(Job.id).where(Job.id == job_id))  # more work before the commit

    consumer = threading.Thread(target=consume)
    consumer.start()
    try:
        with ThreadPoolExecutor(6) as pool:
            list(pool.map(write, steps))
        with transaction(engine) as s:
            final = {
                job_id: (job.status, job.updated_at) for job_id in job_ids if (job := get_job(s, job_id))
            }
        poll_until(lambda: dict(seen), lambda now: now == final, timeout=30)
    finally:
        done.set()
        consumer.join()
