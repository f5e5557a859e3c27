"""models/stored_files.py against real rows: three jobs with result files at the same paths
(ids interleaved, records in the jobs on either side), so every lookup must keep to one job
and one path; what `record` answers, and the one files_stored event it writes with the
last file of a job, counting that job's outcomes alone."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import pytest
from sqlalchemy import select

from falbridge.models.db import transaction
from falbridge.models.jobs import create_job
from falbridge.models.stored_files import Recorded, record, recorded, stored_for, unrecorded_of
from falbridge.models.tables import Job, JobEvent, ResultFile

pytestmark = pytest.mark.usefixtures("db_url")

PATHS = ("a", "b", "c")


@dataclass(frozen=True)
class Jobs:
    """Three jobs by id order (low < mid < high), and their result files' ids by path."""

    low: uuid.UUID
    mid: uuid.UUID
    high: uuid.UUID
    file_ids: dict[tuple[uuid.UUID, str], int]


def _record(job_id: uuid.UUID, path: str, status: str = "stored") -> Recorded:
    values = {"path": path, "fal_url": f"https://cdn.test/{job_id}/{path}", "status": status}
    with transaction() as s:
        return record(s, job_id, values)


def _three_jobs() -> Jobs:
    """Files a, b, c in each job, their ids interleaved across the jobs; records for b and
    c in the jobs around the middle one (none finished), and for its a and c."""
    with transaction() as s:
        made = [create_job(s, "fal-ai/evf-sam", {"n": n})[0].id for n in range(3)]
    low, mid, high = sorted(made)
    file_ids = {}
    with transaction() as s:
        for path in PATHS:
            for job_id in (low, mid, high):
                row = ResultFile(job_id=job_id, path=path, url=f"https://cdn.test/{job_id}/{path}")
                s.add(row)
                s.flush()
                file_ids[job_id, path] = row.id
    for job_id, path, status in [
        (low, "b", "stored"),
        (low, "c", "missing"),
        (high, "b", "stored"),
        (high, "c", "stored"),
        (mid, "a", "stored"),
        (mid, "c", "missing"),
    ]:
        assert _record(job_id, path, status) == Recorded(True, False)
    return Jobs(low, mid, high, file_ids)


def test_unrecorded_and_recorded_keep_to_one_job_and_path():
    jobs = _three_jobs()
    with transaction() as s:
        assert [(f.job_id, f.path) for f in unrecorded_of(s, [jobs.mid])[jobs.mid].files] == [(jobs.mid, "b")]
        assert [f.path for f in unrecorded_of(s, [jobs.low])[jobs.low].files] == ["a"]
        found = recorded(s, jobs.mid, "c")
        assert found is not None and (found.job_id, found.path, found.status) == (jobs.mid, "c", "missing")
        found = recorded(s, jobs.mid, "a")
        assert found is not None and (found.job_id, found.path) == (jobs.mid, "a")
        assert recorded(s, jobs.mid, "b") is None  # the jobs around it have one; it has a and c


def test_stored_for_pairs_a_file_with_the_record_of_its_own_job_and_path():
    jobs = _three_jobs()
    ids = jobs.file_ids
    with transaction() as s:
        found = stored_for(s, jobs.mid, ids[jobs.mid, "c"])
        assert found is not None
        result_file, stored = found
        assert isinstance(result_file, ResultFile) and (result_file.id, result_file.path) == (
            ids[jobs.mid, "c"],
            "c",
        )
        assert stored is not None and (stored.job_id, stored.path, stored.status) == (
            jobs.mid,
            "c",
            "missing",
        )
        not_yet = stored_for(s, jobs.mid, ids[jobs.mid, "b"])
        assert not_yet is not None and not_yet[0].path == "b" and not_yet[1] is None
        # Ids of the other jobs' files, below and above, some between the job's own: none.
        for other in (jobs.low, jobs.high):
            assert stored_for(s, jobs.mid, ids[other, "b"]) is None
            assert stored_for(s, jobs.mid, ids[other, "c"]) is None


def _events(job_id: uuid.UUID) -> list[JobEvent]:
    with transaction() as s:
        rows = list(s.scalars(select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.seq)))
        s.expunge_all()
        return rows


def _event_seq(job_id: uuid.UUID) -> int:
    with transaction() as s:
        job = s.get(Job, job_id)
        assert job is not None
        return job.event_seq


def test_the_last_file_of_a_job_writes_its_one_event_counting_its_own_outcomes():
    jobs = _three_jobs()
    assert _record(jobs.mid, "a") == Recorded(False, False)  # recorded already: not again
    assert [e.seq for e in _events(jobs.mid)] == [1]

    assert _record(jobs.mid, "b") == Recorded(True, True)

    _created, stored = _events(jobs.mid)
    assert (stored.seq, stored.source, stored.from_status, stored.to_status) == (
        2,
        "store",
        "pending",
        "pending",
    )
    assert stored.detail == {"stored": 2, "missing": 1}
    assert _event_seq(jobs.mid) == 2
    assert [_event_seq(other) for other in (jobs.low, jobs.high)] == [1, 1]
    assert [len(_events(other)) for other in (jobs.low, jobs.high)] == [1, 1]
    assert _record(jobs.mid, "b", "missing") == Recorded(False, False)


def test_a_job_that_is_gone_records_nothing():
    assert _record(uuid.uuid4(), "a") == Recorded(False, False)
