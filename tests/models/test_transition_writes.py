"""What a transition writes besides its job's row, with Core: an event and its deliveries
one at a time, at once (what the transaction reads next sees them); a held batch's events,
deliveries and result files all together, an INSERT a table, as it ends; the deliveries
dispatched after the commit, never for a batch rolled back."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from falbridge.models import outbox, transition_writes
from falbridge.models.db import transaction
from falbridge.models.jobs import add_result_files, lock_job, transition
from falbridge.models.states import EventSource, JobStatus
from falbridge.models.tables import EventDelivery, JobEvent, ResultFile
from falbridge.worker.notify import manage
from tests.plugins.db import statements_sent
from tests.worker.notify.helpers import new_job


@pytest.fixture
def dispatched(notifying):
    """The delivery ids handed to the dispatcher, as the worker's would be."""
    handed: list[int] = []
    previous = outbox.set_dispatcher(handed.extend)
    yield handed
    outbox.set_dispatcher(previous)


def _submit_all(job_ids) -> None:
    for job_id in job_ids:
        with transaction() as s:
            job = lock_job(s, job_id)
            transition(s, job, JobStatus.SUBMITTED, EventSource.SUBMIT, request_id=f"r-{job_id}")


def test_a_held_batch_writes_its_events_and_deliveries_in_two_inserts(notifying, dispatched, db_url):
    manage.create(notifying.url, ["job.completed"])
    manage.create(notifying.url, ["job.status_changed"])
    job_ids = [new_job(callbacks={"notify_url": f"{notifying.url}/own"}).id for _ in range(5)]
    _submit_all(job_ids)
    dispatched.clear()
    with statements_sent() as sent, transaction() as s, transition_writes.held(s):
        for job_id in job_ids:
            transition(s, lock_job(s, job_id), JobStatus.COMPLETED, EventSource.WEBHOOK, result={})
            files = [{"path": "image", "url": "https://cdn.test/m", "width": 8}, {"path": "b", "url": "u"}]
            assert add_result_files(s, job_id, files) == 2
        assert not dispatched
    inserts = [sql.split()[2].strip('"') for sql in sent if sql.startswith("INSERT")]
    if db_url.startswith("postgresql"):
        assert inserts == ["job_events", "event_deliveries", "result_files"]
    else:  # SQLite cannot say which id each row of one INSERT got: SQLAlchemy sends a row each
        assert inserts == ["job_events"] * 5 + ["event_deliveries"] * 15 + ["result_files"]
    with transaction() as s:
        done = s.scalars(select(JobEvent).where(JobEvent.to_status == "completed")).all()
        assert sorted(e.job_id for e in done) == sorted(job_ids) and {e.seq for e in done} == {3}
        rows = s.execute(
            select(EventDelivery.id, EventDelivery.event_id, EventDelivery.target).where(
                EventDelivery.event_id.in_([e.id for e in done])
            )
        ).all()
    # Each completed event: both subscriptions and the job's own notify_url.
    expected = ["subscription", "subscription", "notify_url"] * 5
    assert sorted(target for _, _, target in rows) == sorted(expected)
    assert sorted(dispatched) == sorted(row.id for row in rows)
    with transaction() as s:
        found = s.execute(select(ResultFile.job_id, ResultFile.path, ResultFile.width)).all()
    assert sorted(found) == sorted((j, p, w) for j in job_ids for p, w in (("image", 8), ("b", None)))


def test_one_event_at_a_time_is_written_at_once_and_read_back_in_its_transaction(notifying, dispatched):
    manage.create(notifying.url, ["job.status_changed"])
    job = new_job()
    assert job.events[0].id is not None  # the new job's answer shows its first event whole
    with transaction() as s:
        transition(s, lock_job(s, job.id), JobStatus.SUBMITTED, EventSource.SUBMIT, request_id="r-1")
        seen = s.scalar(select(func.count()).select_from(JobEvent).where(JobEvent.job_id == job.id))
        delivered = s.scalar(select(func.count()).select_from(EventDelivery))
        assert (seen, delivered) == (2, 2)
        assert len(dispatched) == 1  # the creation's delivery; this one waits for the commit
    assert len(dispatched) == 2


def test_a_held_batch_that_fails_writes_and_dispatches_nothing(notifying, dispatched):
    manage.create(notifying.url, ["job.status_changed"])
    [job_id] = [new_job().id]
    dispatched.clear()
    with pytest.raises(RuntimeError), transaction() as s, transition_writes.held(s):
        transition(s, lock_job(s, job_id), JobStatus.SUBMITTED, EventSource.SUBMIT, request_id="r-1")
        raise RuntimeError("the batch fails")
    with transaction() as s:
        assert s.scalar(select(func.count()).select_from(JobEvent).where(JobEvent.job_id == job_id)) == 1
    assert dispatched == []
