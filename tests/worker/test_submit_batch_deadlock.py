"""Recording a batch's answers when PostgreSQL picks that transaction as a deadlock's
victim (worker/submit_batch.py): it is run again, and records each answer once."""

from __future__ import annotations

import logging
import threading
import uuid

import pytest
from sqlalchemy import text

from falbridge.models.db import get_engine, transaction
from falbridge.models.jobs import create_job
from falbridge.models.tables import Job
from falbridge.worker.fal import Submission
from falbridge.worker.submit import Claim, Submitted
from falbridge.worker.submit_batch import BatchReport, _record_answers
from tests.plugins.waiting import poll_until

EVF = "fal-ai/evf-sam"


def _leased_jobs(count: int) -> list[uuid.UUID]:
    with transaction() as s:
        jobs = [create_job(s, EVF, {"prompt": f"cat {n}"})[0] for n in range(count)]
        s.flush()
        return sorted(job.id for job in jobs)


def _answer(job_id: uuid.UUID) -> tuple[Claim, Submission]:
    request_id = f"req-{job_id.hex[:8]}"
    base = f"https://queue.fal.run/fal-ai/evf-sam/requests/{request_id}"
    return Claim(job_id, EVF, {}), Submission(EVF, request_id, f"{base}/status", base, f"{base}/cancel")


def _waiting_for_a_lock(engine) -> bool:
    with engine.connect() as conn:
        return bool(
            conn.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE wait_event_type = 'Lock' AND datname = current_database()"
                )
            ).scalar()
        )


def test_a_recording_chosen_as_a_deadlocks_victim_is_run_again(db_url, caplog):
    if not db_url.startswith("postgresql"):
        pytest.skip("deadlock detection is PostgreSQL's (SQLite's writers take turns)")
    first, second = _leased_jobs(2)
    answers = [_answer(first), _answer(second)]
    engine = get_engine(db_url)
    report = BatchReport()
    failures: list[BaseException] = []

    def record() -> None:
        try:
            _record_answers(answers, report)
        except BaseException as exc:  # reported by the test below
            failures.append(exc)

    recorder = threading.Thread(target=record)
    with engine.connect() as other:
        # The other side of the cycle, as a drain applying callbacks in its own order: it
        # holds the second job, then wants the first. Its own deadlock check waits longer,
        # so the recorder, which started waiting first, is the one PostgreSQL aborts.
        other.execute(text("SET deadlock_timeout = '60s'"))
        other.execute(text("SELECT id FROM jobs WHERE id = :id FOR UPDATE"), {"id": second})
        recorder.start()
        poll_until(lambda: _waiting_for_a_lock(engine), bool, timeout=30)  # it holds the first
        other.execute(text("SELECT id FROM jobs WHERE id = :id FOR UPDATE"), {"id": first})
        other.commit()
    recorder.join(60)

    assert not failures
    assert any("deadlock detected" in r.getMessage() and "again" in r.getMessage() for r in caplog.records)
    assert report.outcomes == {first: Submitted.SUBMITTED, second: Submitted.SUBMITTED}
    with transaction() as s:
        for job_id, (_, submission) in zip((first, second), answers, strict=True):
            job = s.get(Job, job_id)
            assert job is not None
            assert (job.status, job.request_id) == ("submitted", submission.request_id)
            assert [e.to_status for e in job.events] == ["pending", "submitted"]


@pytest.fixture(autouse=True)
def _warnings(caplog):
    caplog.set_level(logging.WARNING, logger="falbridge.worker.submit_batch")
