"""Waking the submitter (worker/submit_wakeup.py): many asks while a drain waits make one drain,
an ask after the drain started makes the next, and only an ended job wakes it."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest

from falbridge.models.transitions import Transition
from falbridge.worker import submit_wakeup

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
