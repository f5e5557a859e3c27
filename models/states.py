"""The job state machine.

    pending ──> submitted ──> in_progress ──> completed | failed | cancelled
       │  ╲          ▲                              ▲
       │   ╲──> outcome_unknown ────────────────────┘
       └───────────────────────────────────────────> (any terminal state)

Every state has a rank and a transition is applied only when it moves the job to a
higher rank. That one rule gives the properties fal's delivery model needs:

- repeats are harmless: the same event twice is a no-op the second time;
- out-of-order events are harmless: an IN_PROGRESS poll that lands after the
  completion webhook has a lower rank and is ignored;
- a terminal state is never left: nothing ranks above it;
- a callback that beats the submit response may take a job from `pending` straight
  to a terminal state; the submit response then only fills in fal's ids and URLs.

`outcome_unknown` ranks just above `pending`: a lost submit response may later be
resolved by a callback (terminal) or by the reconciler (submitted / terminal).
"""

from __future__ import annotations

import enum


class JobStatus(enum.StrEnum):
    PENDING = "pending"
    OUTCOME_UNKNOWN = "outcome_unknown"
    SUBMITTED = "submitted"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def rank(self) -> int:
        return _RANK[self]

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL


_RANK = {
    JobStatus.PENDING: 0,
    JobStatus.OUTCOME_UNKNOWN: 1,
    JobStatus.SUBMITTED: 2,
    JobStatus.IN_PROGRESS: 3,
    JobStatus.COMPLETED: 4,
    JobStatus.FAILED: 4,
    JobStatus.CANCELLED: 4,
}

TERMINAL = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED})
ALL_STATUSES = tuple(s.value for s in JobStatus)


def can_transition(current: JobStatus | str, new: JobStatus | str) -> bool:
    return JobStatus(new).rank > JobStatus(current).rank


def states_before(new: JobStatus | str) -> tuple[str, ...]:
    """The states from which `new` may be entered (used in conditional UPDATEs)."""
    target = JobStatus(new).rank
    return tuple(s.value for s in JobStatus if s.rank < target)


class EventSource(enum.StrEnum):
    """Who caused a transition; shown in the job's history."""

    API = "api"
    CLI = "cli"
    SUBMIT = "submit"
    WEBHOOK = "webhook"
    POLL = "poll"
    CANCEL = "cancel"
    RECONCILE = "reconcile"
    STORE = "store"  # not a transition: every result file stored or recorded missing
