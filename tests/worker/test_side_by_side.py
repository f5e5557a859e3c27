"""Running a step for each of a commit's rows in one task (worker/side_by_side.py): in
order, each row's failure its own, and really side by side."""

from __future__ import annotations

import threading

from falbridge.worker import side_by_side


def test_results_come_back_in_the_items_order():
    assert side_by_side.run_each([3, 1, 2], lambda n: n * 10) == [(3, 30), (1, 10), (2, 20)]


def test_a_step_that_raises_is_none_for_its_item_alone(caplog):
    def step(n: int) -> int:
        if n == 2:
            raise RuntimeError("boom")
        return n

    assert side_by_side.run_each([1, 2, 3], step) == [(1, 1), (2, None), (3, 3)]
    assert "step failed for 2" in caplog.text and "boom" in caplog.text


def test_the_steps_run_at_the_same_time():
    # Each step waits for all the others: run one after another, the barrier breaks.
    barrier = threading.Barrier(side_by_side.PARALLEL, timeout=10)
    items = list(range(side_by_side.PARALLEL))
    assert side_by_side.run_each(items, lambda n: barrier.wait() >= 0) == [(n, True) for n in items]


def test_one_item_runs_in_the_callers_thread():
    caller = threading.get_ident()
    assert side_by_side.run_each(["only"], lambda _: threading.get_ident()) == [("only", caller)]


def test_chunks_cut_a_commits_rows_into_tasks_of_at_most_chunk_rows():
    rows = list(range(2 * side_by_side.CHUNK + 1))
    assert [len(c) for c in side_by_side.chunks(rows)] == [side_by_side.CHUNK, side_by_side.CHUNK, 1]
    assert [row for chunk in side_by_side.chunks(rows) for row in chunk] == rows
    assert list(side_by_side.chunks([])) == []
