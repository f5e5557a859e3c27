"""Waking the submitter (worker/submit_wakeup.py): many asks while a drain waits make one drain,
an ask after the drain started makes the next, and only an ended job wakes it."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest
from sqlalchemy import text

from falbridge.models.db import transaction
from falbridge.models.jobs import create_job
from falbridge.models.transitions import Transition
from falbridge.worker import submit_wakeup, tasks

ASKERS = 16


@pytest.fixture
def drains(pipeline_env):
    """The drains this process would have enqueued (their countdowns), on the test Redis."""
    enqueued: list[float | None] = []

    def record(countdown: float | None) -> bool:
        enqueued.append(countdown)
        return True

    previous = submit_wakeup.set_enqueuer(record)
    submit_wakeup.drain_started()  # no flag left by an earlier test
    yield enqueued
    submit_wakeup.drain_started()
    submit_wakeup.set_enqueuer(previous)


def test_many_asks_at_once_enqueue_one_drain_and_a_started_drain_lets_the_next_through(drains):
    start = threading.Barrier(ASKERS)
    answers: list[bool] = []

    def ask() -> None:
        start.wait()
        answers.append(submit_wakeup.request_drain())

    threads = [threading.Thread(target=ask) for _ in range(ASKERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(answers) == [False] * (ASKERS - 1) + [True]
    assert drains == [None]
    submit_wakeup.drain_started()
    assert submit_wakeup.request_drain(countdown=0.5) is True and submit_wakeup.request_drain() is False
    assert drains == [None, 0.5]


def _move(old: str, new: str) -> Transition:
    now = datetime.now(UTC)
    return Transition(None, "fal-ai/x", None, old, new, "webhook", now, now)  # type: ignore[arg-type]


def test_only_an_ended_job_wakes_the_submitter_and_only_under_a_cap(drains, monkeypatch):
    submit_wakeup.after_transitions([_move("submitted", "completed")])
    assert drains == []  # no cap: nothing ever waits for a slot
    monkeypatch.setenv("FALBRIDGE_MAX_IN_FLIGHT", "3")
    submit_wakeup.after_transitions([_move("pending", "submitted"), _move("submitted", "in_progress")])
    assert drains == []
    submit_wakeup.after_transitions([_move("in_progress", "failed")])
    assert drains == [None]


@pytest.fixture
def refuse_submitted(db_url):
    """A trigger that makes the database refuse to record any job as submitted: a batch
    whose answers cannot be recorded, whatever the reason in production."""
    postgres = db_url.startswith("postgresql")
    with transaction() as s:
        if postgres:
            s.execute(
                text(
                    "CREATE FUNCTION refuse_submitted() RETURNS trigger LANGUAGE plpgsql AS "
                    "$$ BEGIN RAISE EXCEPTION 'refused'; END $$"
                )
            )
            s.execute(
                text(
                    "CREATE TRIGGER refuse_submitted BEFORE UPDATE ON jobs FOR EACH ROW "
                    "WHEN (NEW.status = 'submitted') EXECUTE FUNCTION refuse_submitted()"
                )
            )
        else:
            s.execute(
                text(
                    "CREATE TRIGGER refuse_submitted BEFORE UPDATE ON jobs "
                    "WHEN NEW.status = 'submitted' BEGIN SELECT RAISE(ABORT, 'refused'); END"
                )
            )
    yield
    with transaction() as s:
        s.execute(text("DROP TRIGGER IF EXISTS refuse_submitted" + (" ON jobs" if postgres else "")))
        if postgres:
            s.execute(text("DROP FUNCTION IF EXISTS refuse_submitted()"))


def test_a_drain_whose_batch_fails_asks_for_the_next_drain_instead_of_raising(drains, refuse_submitted):
    """The jobs behind a failed batch are not stranded until the sweeper: the drain ends
    asking for the next one (after a pause), as it does when its time is up."""
    with transaction() as s:
        create_job(s, "fal-ai/some/model", {"n": 1})
    assert tasks.submit_pending() == "0 claimed"
    assert drains == [tasks.FAILED_BATCH_WAIT_S]
