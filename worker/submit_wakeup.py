"""Waking the submitter: asking for a drain of the pending jobs (the `submit_pending`
task), at most one waiting in the queue at a time (worker/wake_flag.py).

Asked for when a batch came back full (more may be waiting), when the rate limit's next
token is due, and, while caps are set, after a transition that takes a job out of flight
commits (a slot is free). The flag lives a minute past a drain's countdown, longer than a
drain waits in a busy queue; and the sweeper asks too, as the backstop.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from falbridge import config
from falbridge.models.states import TERMINAL
from falbridge.models.transitions import Transition
from falbridge.worker.wake_flag import WakeFlag

log = logging.getLogger(__name__)

# Longer than a drain waits in a busy queue, short enough not to matter when one is lost.
FLAG = WakeFlag("falbridge:submit_pending:queued", 60.0)

Enqueue = Callable[[float | None], bool]
_enqueue: Enqueue | None = None


def set_enqueuer(enqueue: Enqueue | None) -> Enqueue | None:
    """How this process enqueues a drain (falbridge.worker.tasks; with a countdown or
    None); returns the one it replaces."""
    global _enqueue
    previous, _enqueue = _enqueue, enqueue
    return previous


def request_drain(countdown: float | None = None) -> bool:
    """Enqueue a drain unless one is already waiting; True if this call enqueued it."""
    enqueue = _enqueue
    if enqueue is None:
        return False
    try:
        if not FLAG.claim(longer_by_s=countdown or 0.0):
            return False
    except Exception as exc:  # the broker is down: so is the enqueue; the sweeper asks later
        log.warning("could not ask for a submit drain: %s", exc)
        return False
    return enqueue(countdown)


def drain_started() -> None:
    """Clear the flag: an ask from now on queues the next drain."""
    try:
        FLAG.release()
    except Exception as exc:
        log.warning("could not clear the submit drain flag: %s", exc)


def after_transitions(moves: Sequence[Transition]) -> None:
    """After a commit: a job that ended frees its slot (while caps are set). Asked for
    even when the job never held one (cancelled while pending): a drain with nothing to
    do costs one claim."""
    try:
        if config.current().flow.capped() and any(_ended(move) for move in moves):
            request_drain()
    except Exception as exc:  # the caller's transaction has committed: never raise
        log.warning("could not wake the submitter: %s", exc)


def _ended(move: Transition) -> bool:
    return move.from_status != move.to_status and any(move.to_status == status.value for status in TERMINAL)
