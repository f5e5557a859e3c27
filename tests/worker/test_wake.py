"""Waking the submitter (worker/wake.py): many asks while a drain waits make one drain,
an ask after the drain started makes the next, and only an ended job wakes it."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest

from falbridge.models.transitions import Transition
from falbridge.worker import wake

ASKERS = 16


@pytest.fixture
def drains(pipeline_env):
    """The drains this process would have enqueued (their countdowns), on the test Redis."""
    enqueued: list[float | None] = []

    def record(countdown: float | None) -> bool:
        enqueued.append(countdown)
        return True

    previous = wake.set_enqueuer(record)
    wake.drain_started()  # no flag left by an earlier test
    yield enqueued
    wake.drain_started()
    wake.set_enqueuer(previous)


def test_many_asks_at_once_enqueue_one_drain_and_a_started_drain_lets_the_next_through(drains):
    start = threading.Barrier(ASKERS)
    answers: list[bool] = []

    def ask() -> None:
        start.wait()
        answers.append(wake.request_drain())

    threads = [threading.Thread(target=ask) for _ in range(ASKERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(answers) == [False] * (ASKERS - 1) + [True]
    assert drains == [None]
    wake.drain_started()
    assert wake.request_drain(countdown=0.5) is True and wake.request_drain() is False
    assert drains == [None, 0.5]


def _move(old: str, new: str) -> Transition:
    now = datetime.now(UTC)
    return Transition(None, "fal-ai/x", None, old, new, "webhook", now, now)  # type: ignore[arg-type]


def test_only_an_ended_job_wakes_the_submitter_and_only_under_a_cap(drains, monkeypatch):
    wake.after_transitions([_move("submitted", "completed")])
    assert drains == []  # no cap: nothing ever waits for a slot
    monkeypatch.setenv("FALBRIDGE_MAX_IN_FLIGHT", "3")
    wake.after_transitions([_move("pending", "submitted"), _move("submitted", "in_progress")])
    assert drains == []
    wake.after_transitions([_move("in_progress", "failed")])
    assert drains == [None]
