import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import func, inspect, select, update

from falbridge.models.db import transaction
from falbridge.models.jobs import (
    AmbiguousPrefix,
    create_job,
    get_job,
    job_by_request_id,
    lock_job,
    lock_job_by_request_id,
    resolve_job_id,
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


def test_each_event_carries_the_jobs_next_sequence(engine):
    """The sequence rises with every transition, in the UPDATE that makes it; a refused
    transition takes no number."""
    with transaction(engine) as s:
        job, _ = create_job(s, "fal-ai/x/y", {})
    for target in (JobStatus.SUBMITTED, JobStatus.PENDING, JobStatus.IN_PROGRESS, JobStatus.COMPLETED):
        with transaction(engine) as s:
            transition(s, lock_job(s, job.id), target, EventSource.WEBHOOK)
    with transaction(engine) as s:
        final = get_job(s, job.id, full=True)
        assert [(e.to_status, e.seq) for e in final.events] == [
            ("pending", 1),
            ("submitted", 2),
            ("in_progress", 3),
            ("completed", 4),
        ]
        assert final.event_seq == 4


def test_a_transition_on_a_stale_unlocked_row_writes_nothing(engine):
    """A job read without its lock, then moved on by someone else: the transition decided
    on the stale read must not overwrite what the other writer committed."""
    with transaction(engine) as s:
        job, _ = create_job(s, "fal-ai/x/y", {})
    with transaction(engine) as s:
        stale = get_job(s, job.id)  # read, not locked; the session keeps no hold on it
    with transaction(engine) as s:
        moved = lock_job(s, job.id)
        assert transition(s, moved, JobStatus.COMPLETED, EventSource.WEBHOOK, result={"ok": 1})
    with transaction(engine) as s:
        s.add(stale)  # still "pending" as far as this object knows
        assert stale.status == "pending"
        assert not transition(s, stale, JobStatus.FAILED, EventSource.POLL, error="late")
        assert stale.status == "pending" and stale.error is None  # nothing reflected either
    with transaction(engine) as s:
        final = get_job(s, job.id, full=True)
        assert (final.status, final.result, final.error) == ("completed", {"ok": 1}, None)
        assert [e.to_status for e in final.events] == ["pending", "completed"]


def _job_with_id(engine, job_id: str) -> uuid.UUID:
    with transaction(engine) as s:
        job = Job(id=uuid.UUID(job_id), endpoint_id="fal-ai/x/y", input={})
        s.add(job)
    return job.id


def test_a_job_is_named_by_its_id_or_a_unique_prefix_of_8_to_31_hex_digits(engine):
    lowest = _job_with_id(engine, "abcdef01-0000-0000-0000-000000000000")  # prefix, then zeros
    highest = _job_with_id(engine, "12345678-ffff-ffff-ffff-ffffffffffff")  # prefix, then f's
    _job_with_id(engine, "abcdef00-ffff-ffff-ffff-ffffffffffff")  # just below abcdef01…
    _job_with_id(engine, "12345679-0000-0000-0000-000000000000")  # just above 12345678…
    with transaction(engine) as s:
        assert resolve_job_id(s, "abcdef01") == lowest
        assert resolve_job_id(s, "12345678") == highest
        assert resolve_job_id(s, "ABCDEF01-0000") == lowest  # any case, dashes ignored
        assert resolve_job_id(s, "12345678ffffffffffffffffffffffff"[:31]) == highest  # 31 digits
        assert resolve_job_id(s, str(highest)) == highest
        full = uuid.uuid4()
        assert resolve_job_id(s, str(full)) == full  # a whole id is taken as it is, job or not
        for not_a_prefix in ("abcdef0", "1234567", "abcdef0g", "", "abcdef01" * 4 + "0"):
            assert resolve_job_id(s, not_a_prefix) is None, not_a_prefix
        assert resolve_job_id(s, "abcdef02") is None  # no such job


def test_a_prefix_two_jobs_share_is_ambiguous(engine):
    _job_with_id(engine, "abcdef01-0000-0000-0000-000000000000")
    _job_with_id(engine, "abcdef01-ffff-ffff-ffff-ffffffffffff")
    with transaction(engine) as s:
        with pytest.raises(AmbiguousPrefix):
            resolve_job_id(s, "abcdef01")
        assert resolve_job_id(s, "abcdef010") == uuid.UUID("abcdef01-0000-0000-0000-000000000000")


def test_an_external_id_taken_returns_its_own_job_among_others(engine):
    """The lookup after a conflict finds exactly the job holding that external_id, not one
    whose external_id merely sorts near it."""
    with transaction(engine) as s:
        create_job(s, "fal-ai/x/y", {"n": 9}, external_id="order-9")  # sorts after ours
        create_job(s, "fal-ai/x/y", {"n": 0}, external_id="order-0")  # before ours
        mine, _ = create_job(s, "fal-ai/x/y", {"n": 1}, external_id="order-1")
    with transaction(engine) as s:
        again, created = create_job(s, "fal-ai/x/y", {"n": 2}, external_id="order-1")
        assert (again.id, created, again.input) == (mine.id, False, {"n": 1})


def test_whether_a_job_is_read_in_full_is_said_by_name(engine):
    with transaction(engine) as s:
        job, _ = create_job(s, "fal-ai/x/y", {})
        with pytest.raises(TypeError):
            get_job(s, job.id, True)  # type: ignore[misc]
        assert get_job(s, job.id, full=True).id == job.id


def test_jobs_are_found_by_their_own_id_or_request_id_only(engine):
    with transaction(engine) as s:
        first, _ = create_job(s, "fal-ai/x/y", {"n": 1})
        second, _ = create_job(s, "fal-ai/x/y", {"n": 2})
        first.request_id, second.request_id = "req-b", "req-c"
    low, high = sorted([first.id, second.id])
    with transaction(engine) as s:
        assert get_job(s, low).id == low and get_job(s, high).id == high
        assert get_job(s, str(high)).id == high and get_job(s, "not-an-id") is None
        assert get_job(s, uuid.UUID(int=0)) is None  # no job has it, though others sort after
        assert lock_job(s, uuid.UUID(int=0)) is None
        assert job_by_request_id(s, "req-c").id == second.id
        assert lock_job_by_request_id(s, "req-b").id == first.id
        for unknown in ("req-a", "req-d"):  # sorting before and after the stored ones
            assert job_by_request_id(s, unknown) is None
            assert lock_job_by_request_id(s, unknown) is None


def test_a_transition_writes_its_own_job_only(engine):
    with transaction(engine) as s:
        jobs = [create_job(s, "fal-ai/x/y", {"n": n})[0] for n in range(3)]
    low, middle, high = sorted(job.id for job in jobs)
    with transaction(engine) as s:
        assert transition(s, lock_job(s, middle), JobStatus.SUBMITTED, EventSource.SUBMIT, request_id="r")
    with transaction(engine) as s:
        statuses = {job_id: get_job(s, job_id).status for job_id in (low, middle, high)}
        assert statuses == {low: "pending", middle: "submitted", high: "pending"}
        assert get_job(s, middle).completed_at is None  # stamped by a terminal state only
        assert (
            s.scalar(select(func.count()).select_from(JobEvent).where(JobEvent.to_status == "submitted")) == 1
        )


def test_a_plain_read_leaves_files_and_history_unloaded(engine):
    """A job may have many events; only a full read (the job's own page) loads them."""
    with transaction(engine) as s:
        job, _ = create_job(s, "fal-ai/x/y", {})
    with transaction(engine) as s:
        plain = get_job(s, job.id)
        assert {"files", "events"}.isdisjoint(inspect(plain).dict)
    with transaction(engine) as s:
        full = get_job(s, job.id, full=True)
        assert {"files", "events"} <= set(inspect(full).dict)


def test_locking_a_job_reads_its_row_afresh(engine):
    """A session that already holds the job (read earlier, then the row changed under a
    statement that bypassed it) gets the row as it is now, not its stale copy."""
    with transaction(engine) as s:
        job, _ = create_job(s, "fal-ai/x/y", {})
        job.request_id = "req-1"
    with transaction(engine) as s:
        held = get_job(s, job.id)
        moved = update(Job).where(Job.id == job.id).execution_options(synchronize_session=False)
        s.execute(moved.values(status="submitted"))
        assert held.status == "pending"  # the stale copy
        assert lock_job(s, job.id).status == "submitted"
    with transaction(engine) as s:
        held = get_job(s, job.id)
        s.execute(moved.values(status="in_progress"))
        assert lock_job_by_request_id(s, "req-1").status == "in_progress"


def test_a_stale_transition_loses_to_a_writer_that_moved_the_job_forward(engine):
    """The UPDATE is conditional on exactly the status read: a job moved on to a status that
    sorts after it (pending -> submitted) is not overwritten either."""
    with transaction(engine) as s:
        job, _ = create_job(s, "fal-ai/x/y", {})
    with transaction(engine) as s:
        stale = get_job(s, job.id)
    with transaction(engine) as s:
        assert transition(s, lock_job(s, job.id), JobStatus.SUBMITTED, EventSource.SUBMIT, request_id="r-1")
    with transaction(engine) as s:
        s.add(stale)
        assert not transition(s, stale, JobStatus.FAILED, EventSource.POLL, error="late")
    with transaction(engine) as s:
        assert get_job(s, job.id).status == "submitted"


def test_a_prefix_holding_every_hex_digit_still_names_its_job(engine):
    job_id = _job_with_id(engine, "01234567-89ab-cdef-0000-000000000000")
    with transaction(engine) as s:
        assert resolve_job_id(s, "0123456789abcdef") == job_id


def test_what_a_job_is_created_with_beyond_its_input_is_named_not_positional(engine):
    """endpoint, input, then options by name only: an external_id passed where metadata was
    meant (or the other way round) is refused rather than stored under the wrong name."""
    with transaction(engine) as s, pytest.raises(TypeError):
        create_job(s, "fal-ai/x/y", {}, "order-1")  # type: ignore[misc]
