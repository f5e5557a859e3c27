"""Work a step leaves for later.

A step (submit, apply, fetch, poll, cancel, sweep) commits its own changes and returns
the follow-ups they call for, rather than enqueueing them itself: so no step depends on
the task queue, and whoever ran the step decides how the follow-ups run. The Celery tasks
enqueue them (falbridge.worker.tasks), `falbridge reconcile` runs them in its own process
(falbridge.worker.inline).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Work(enum.StrEnum):
    SUBMIT = "submit"
    SUBMIT_PENDING = "submit_pending"  # a drain of the pending jobs (no target)
    RESUBMIT = "resubmit"  # the sweeper's once-only retry of an outcome_unknown submit
    APPLY_DELIVERY = "apply_delivery"
    FETCH_RESULT = "fetch_result"
    POLL = "poll"
    CANCEL_AT_FAL = "cancel_at_fal"
    FAIL_OUTCOME_UNKNOWN = "fail_outcome_unknown"
    DELIVER = "deliver"  # an outgoing webhook: the target is an event delivery's id
    STORE_FILES = "store_files"  # a completed job's result files into storage


@dataclass(frozen=True)
class FollowUp:
    work: Work
    target: str  # a job id; for APPLY_DELIVERY, a delivery id; for DELIVER, an event delivery's id


def submit(job_id: object) -> FollowUp:
    return FollowUp(Work.SUBMIT, str(job_id))


def submit_pending() -> FollowUp:
    """A drain of the pending jobs, oldest (and most urgent) first, in batches."""
    return FollowUp(Work.SUBMIT_PENDING, "")


def fetch_result(job_id: object) -> FollowUp:
    return FollowUp(Work.FETCH_RESULT, str(job_id))


def cancel_at_fal(job_id: object) -> FollowUp:
    return FollowUp(Work.CANCEL_AT_FAL, str(job_id))
