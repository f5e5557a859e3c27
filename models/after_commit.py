"""Work a transaction asks for once it has committed: a task to enqueue for a row it wrote
(never before the commit: the task would not find the row, or find one a rollback then
undid). Each kind of work is one AfterCommit; the process that enqueues (the worker's task
module) sets its dispatcher. Where none is set, or the broker is down at that moment,
nothing is sent and the sweeper finds the work undone.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextvars import ContextVar
from typing import Generic, TypeVar

from sqlalchemy import event as sa_event
from sqlalchemy.orm import Session

Item = TypeVar("Item")
Handed = TypeVar("Handed")


class AfterCommit(Generic[Item, Handed]):
    """Items collected in a session, each turned by `hand` into what the dispatcher takes
    after the commit; dropped if the session rolls back."""

    def __init__(self, key: str, hand: Callable[[Item], Handed]) -> None:
        self._key = key
        self._hand = hand
        self._dispatcher: Callable[[Sequence[Handed]], None] | None = None
        self._lock = threading.Lock()
        self._held: ContextVar[list[Handed] | None] = ContextVar(f"{key}.held", default=None)
        sa_event.listen(Session, "after_commit", self._dispatch)
        sa_event.listen(Session, "after_rollback", self._forget)

    def add(self, session: Session, items: Iterable[Item]) -> None:
        session.info.setdefault(self._key, []).extend(items)

    def set_dispatcher(
        self, dispatcher: Callable[[Sequence[Handed]], None] | None
    ) -> Callable[[Sequence[Handed]], None] | None:
        """What this process does with the items after their commit; returns the one it
        replaces. None: nothing."""
        with self._lock:
            previous, self._dispatcher = self._dispatcher, dispatcher
        return previous

    @contextlib.contextmanager
    def together(self) -> Iterator[None]:
        """The items of every commit made inside (in this context, and in threads run in
        copies of it) go to the dispatcher in one call at the end, not one per commit: the
        store runs of a batch of jobs, each committing its job's files_stored event, hand
        their deliveries over as one task. On an exception inside, still handed over."""
        held: list[Handed] = []
        token = self._held.set(held)
        try:
            yield
        finally:
            self._held.reset(token)
            dispatcher = self._dispatcher
            if held and dispatcher is not None:
                dispatcher(held)

    def _dispatch(self, session: Session) -> None:
        items: list[Item] = session.info.pop(self._key, [])
        dispatcher = self._dispatcher
        if not items or dispatcher is None:
            return
        handed = [self._hand(item) for item in items]
        held = self._held.get()
        if held is not None:
            held.extend(handed)  # list.extend is atomic: threads may share this list
        else:
            dispatcher(handed)

    def _forget(self, session: Session) -> None:
        session.info.pop(self._key, None)
