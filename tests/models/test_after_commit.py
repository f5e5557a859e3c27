"""Work handed over after a commit (models/after_commit.py, through the outbox's): one
call per commit, or one for all the commits made together, in any thread."""

from __future__ import annotations

import pytest

from falbridge.models import outbox
from falbridge.models.db import transaction
from falbridge.worker import side_by_side

pytestmark = pytest.mark.usefixtures("db_url")


@pytest.fixture
def handed():
    calls: list[list[int]] = []
    previous = outbox.set_dispatcher(lambda ids: calls.append(list(ids)))
    yield calls
    outbox.set_dispatcher(previous)


def _commit(delivery_id: int) -> None:
    with transaction() as s:
        outbox.dispatch_after_commit(s, [delivery_id])


def _roll_back(delivery_id: int) -> None:
    with pytest.raises(RuntimeError), transaction() as s:
        outbox.dispatch_after_commit(s, [delivery_id])
        raise RuntimeError("rolled back")


def test_each_commit_is_handed_over_after_it(handed):
    _commit(1)
    _commit(2)
    _roll_back(3)
    assert handed == [[1], [2]]


def test_commits_made_together_in_several_threads_are_handed_over_once_at_the_end(handed):
    with outbox.dispatch_together():
        side_by_side.run_each([1, 2, 3, 4], _commit)
        _roll_back(5)
        assert handed == []
    assert [sorted(call) for call in handed] == [[1, 2, 3, 4]]
    _commit(6)  # after it, one call per commit again
    assert handed[-1] == [6]


def test_what_committed_is_handed_over_even_when_the_block_raises(handed):
    with pytest.raises(KeyError), outbox.dispatch_together():
        _commit(1)
        raise KeyError("later")
    assert handed == [[1]]
