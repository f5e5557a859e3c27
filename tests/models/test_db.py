"""Transactions (models/db.py): a snapshot's reads all see one moment."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from falbridge.models.db import snapshot, transaction
from falbridge.models.jobs import create_job, lock_job, transition
from falbridge.models.states import EventSource, JobStatus
from falbridge.models.tables import JobEvent


def _events(s, job_id) -> int:
    return s.scalar(select(func.count()).select_from(JobEvent).where(JobEvent.job_id == job_id))


@pytest.mark.parametrize("reader", [snapshot, transaction])
def test_a_snapshot_does_not_see_a_commit_made_between_its_reads(db_url, reader):
    if db_url.startswith("sqlite"):
        pytest.skip("SQLite's transactions take turns: each is one moment already")
    with transaction() as s:
        job_id = create_job(s, "fal-ai/x/y", {})[0].id
    with reader() as s:
        before = _events(s, job_id)
        with transaction() as other:  # another process's commit, between two reads
            transition(other, lock_job(other, job_id), JobStatus.SUBMITTED, EventSource.SUBMIT)
        after = _events(s, job_id)
    # PostgreSQL's default (READ COMMITTED) sees the commit: the snapshot must not.
    assert (before, after) == ((1, 1) if reader is snapshot else (1, 2))
