"""One batch of the purge (falbridge.models.purge), straight against the database: which
jobs and uploads a batch takes (the cutoff exactly, the cursor between equal timestamps),
what it reports, what compaction resets, what the dry run counts, and on PostgreSQL the
statements it sends and the rows it leaves to another transaction.
The whole purge, files included: tests/worker/test_purge.py and test_purge_inputs.py."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event, select

from falbridge.models.db import transaction
from falbridge.models.purge import Batch, purge_batch, purge_uploads_batch, would_remove
from falbridge.models.tables import InputUpload, Job, JobInput, StoredFile

CUTOFF = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
BEFORE = CUTOFF - timedelta(days=1)
AFTER = CUTOFF + timedelta(days=1)
NOTHING_REMOVED = {
    "delivery_attempts": 0,
    "event_deliveries": 0,
    "job_events": 0,
    "result_files": 0,
    "job_inputs": 0,
    "stored_files": 0,
    "webhook_deliveries": 0,
}


def _id(number: int) -> uuid.UUID:
    return uuid.UUID(int=number)  # ids whose order a test knows


def _job(session: Any, number: int, updated_at: datetime = BEFORE, **fields: Any) -> uuid.UUID:
    job = Job(id=_id(number), endpoint_id="fal-ai/evf-sam", input={"prompt": "cat"}, updated_at=updated_at)
    job.status = fields.pop("status", "completed")
    for name, value in fields.items():
        setattr(job, name, value)
    session.add(job)
    session.flush()
    return job.id


def _upload(session: Any, digest: str, uploaded_at: datetime) -> int:
    upload = InputUpload(
        url=f"https://v3.fal.media/files/{uuid.uuid4().hex}/in.png",
        sha256=digest * 64,
        size=1,
        content_type="image/png",
        uploaded_at=uploaded_at,
    )
    session.add(upload)
    session.flush()
    return upload.id


def _left(column: Any) -> set[Any]:
    with transaction() as session:
        return set(session.scalars(select(column)))


def test_a_batch_takes_the_old_jobs_after_its_cursor_even_at_one_time(db_url):
    with transaction() as session:
        for number in (1, 2, 3, 4):
            _job(session, number)  # one updated_at for all: the id decides their order
        _job(session, 9, updated_at=CUTOFF)  # exactly at the cutoff: not before it

    with transaction() as session:
        batch = purge_batch(session, CUTOFF, (BEFORE, _id(2)), 2, compact=False)
    with transaction() as session:
        rest = purge_batch(session, CUTOFF, batch.after, 2, compact=False)

    assert batch.rows == NOTHING_REMOVED | {"jobs": 2}
    assert batch.after == (BEFORE, _id(4))
    assert _left(Job.id) == {_id(1), _id(2), _id(9)}
    assert (rest.rows, rest.after, rest.bytes) == ({}, None, 0)


def test_a_batch_continues_after_its_last_job(db_url):
    """The cursor is the last job taken, its time and its id, not the first one's."""
    with transaction() as session:
        _job(session, 2, updated_at=BEFORE - timedelta(hours=2))
        _job(session, 1, updated_at=BEFORE - timedelta(hours=1))

    with transaction() as session:
        batch = purge_batch(session, CUTOFF, None, 10, compact=False)

    assert (batch.rows["jobs"], batch.after) == (2, (BEFORE - timedelta(hours=1), _id(1)))


def test_a_batch_counts_the_bytes_of_the_stored_copies_it_releases(db_url):
    with transaction() as session:
        job_id = _job(session, 1)
        for path, size, key in (("a", None, "jobs/a"), ("b", 10, "jobs/b"), ("c", 5, None)):
            session.add(
                StoredFile(
                    job_id=job_id,
                    path=path,
                    fal_url=f"https://f/{path}",
                    status="stored",
                    size=size,
                    storage_key=key,
                )
            )

    with transaction() as session:
        dry = would_remove(session, CUTOFF, compact=False)
        batch = purge_batch(session, CUTOFF, None, 10, compact=False)

    assert (sorted(batch.keys), batch.bytes, batch.rows["stored_files"]) == (["jobs/a", "jobs/b"], 10, 3)
    assert dry[1] == 10  # a size not known counts as nothing, not as a byte


def test_compacting_leaves_no_result_pending(db_url):
    with transaction() as session:
        _job(session, 1, result={"image": {"url": "https://f/r.png"}}, result_pending=True)

    with transaction() as session:
        assert purge_batch(session, CUTOFF, None, 10, compact=True).rows["jobs"] == 1

    with transaction() as session:
        job = session.get_one(Job, _id(1))
        assert (job.input, job.result, job.result_pending) == ({}, None, False)
        assert job.compacted_at is not None


def test_uploads_before_the_cutoff_go_in_id_order_after_the_cursor(db_url):
    with transaction() as session:
        before = [_upload(session, digest, BEFORE) for digest in "abcd"]
        later = [_upload(session, "e", CUTOFF), *(_upload(session, d, AFTER) for d in "fghi")]

    with transaction() as session:
        first = purge_uploads_batch(session, CUTOFF, before[1], 1)
    with transaction() as session:
        second = purge_uploads_batch(session, CUTOFF, None, 10)
    with transaction() as session:
        third = purge_uploads_batch(session, CUTOFF, second.last_upload, 10)

    assert (first.rows, first.last_upload, first.digests) == ({"input_uploads": 1}, before[2], {"c" * 64})
    assert (second.rows, second.last_upload) == ({"input_uploads": 3}, before[3])
    assert second.digests == {"a" * 64, "b" * 64, "d" * 64}
    assert (third.rows, third.last_upload, third.bytes) == ({}, None, 0)
    assert _left(InputUpload.id) == set(later)


def test_the_dry_run_counts_uploads_and_copies_on_either_side_of_the_cutoff(db_url):
    """Copies go when only what the purge removes names their digest: `a` (uploaded before
    only) and `g` (named by an old job only). `c` was uploaded again after the cutoff, and
    `b`, `j`, named by an old job, were uploaded exactly at it: they stay."""
    with transaction() as session:
        uploads = [(d, BEFORE) for d in "aac"] + [(d, CUTOFF) for d in "bj"] + [(d, AFTER) for d in "cdef"]
        for digest, at in uploads:
            _upload(session, digest, at)
        job_id = _job(session, 1)
        session.add_all(JobInput(job_id=job_id, sha256=digest * 64, size=1) for digest in "bjg")

    with transaction() as session:
        rows, stored_bytes, copies = would_remove(session, CUTOFF, compact=True)
        nothing_stored = would_remove(session, BEFORE, compact=False)

    assert (rows["jobs"], rows["job_inputs"], rows["input_uploads"], stored_bytes, copies) == (1, 3, 3, 0, 2)
    assert nothing_stored == (dict.fromkeys(nothing_stored[0], 0), 0, 0)


def test_the_mode_is_named_never_positional(db_url):
    with transaction() as session, pytest.raises(TypeError):
        purge_batch(session, CUTOFF, None, 10, True)  # type: ignore[misc]
    with transaction() as session, pytest.raises(TypeError):
        would_remove(session, CUTOFF, True)  # type: ignore[misc]


def test_every_batch_sends_the_same_statements_whatever_its_size(engine):
    """On PostgreSQL a batch's ids travel as one array parameter: batches of one row and of
    three send the very same statements, which the server keeps parsed."""
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite gets IN (...), one parameter per row")
    sent: list[list[str]] = []

    def note(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        sent[-1].append(statement)

    for size in (1, 3):
        with transaction(engine) as session:
            for number in range(size):
                _job(session, 10 * size + number)
                _upload(session, "abc"[number], BEFORE)
        sent.append([])
        event.listen(engine, "before_cursor_execute", note)
        try:
            with transaction(engine) as session:
                assert purge_batch(session, CUTOFF, None, 10, compact=False).rows["jobs"] == size
                assert purge_uploads_batch(session, CUTOFF, None, 10).rows["input_uploads"] == size
        finally:
            event.remove(engine, "before_cursor_execute", note)
    assert sent[0] == sent[1]


def test_rows_another_transaction_holds_are_left_not_waited_for(engine):
    """FOR UPDATE SKIP LOCKED: a job or an upload another transaction holds is left for the
    next run; waiting for it would stall the purge behind a worker. (SQLite has no row
    locks: its writers take turns.)"""
    if engine.dialect.name != "postgresql":
        pytest.skip("row locks are PostgreSQL's")
    with transaction(engine) as session:
        held_job, free_job = _job(session, 1), _job(session, 2)
        held_upload, free_upload = _upload(session, "a", BEFORE), _upload(session, "b", BEFORE)
    taken: list[Batch] = []

    def purge_both() -> None:
        with transaction(engine) as session:
            taken.append(purge_batch(session, CUTOFF, None, 10, compact=False))
            taken.append(purge_uploads_batch(session, CUTOFF, None, 10))

    with engine.connect() as other, other.begin():
        other.execute(select(Job.id).where(Job.id == held_job).with_for_update())
        other.execute(select(InputUpload.id).where(InputUpload.id == held_upload).with_for_update())
        purging = threading.Thread(target=purge_both, daemon=True)
        purging.start()
        purging.join(timeout=10)
        finished = not purging.is_alive()
    purging.join(timeout=10)
    assert finished, "the purge waited for a locked row"
    assert [batch.rows.get("jobs", batch.rows.get("input_uploads")) for batch in taken] == [1, 1]
    assert (taken[0].after, taken[1].last_upload) == ((BEFORE, free_job), free_upload)
