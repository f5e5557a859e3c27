"""Run follow-up work here and now, in this process, instead of enqueueing it: what
`falbridge reconcile` does (no broker needed), and what the sweeper does with the work it
must not enqueue (falbridge.worker.tasks)."""

from __future__ import annotations

from collections.abc import Callable

from falbridge.worker import cancel, fetch, poll, submit, submit_batch, sweep
from falbridge.worker.apply.delivery import apply_delivery
from falbridge.worker.followup import FollowUp, Work
from falbridge.worker.notify import deliver
from falbridge.worker.storage import store


def run(work: FollowUp) -> object:
    """Do `work`, then whatever it calls for, depth first; returns its outcome."""
    outcome = _STEPS[work.work](work.target)
    for then in getattr(outcome, "follow_ups", ()):
        run(then)
    return getattr(outcome, "outcome", outcome)


_STEPS: dict[Work, Callable[[str], object]] = {
    Work.SUBMIT: submit.submit,
    Work.RESUBMIT: lambda job_id: submit.submit(job_id, resubmit=True),
    # Refused submits wait for their retry time and the next sweep, as no task retries here.
    Work.SUBMIT_PENDING: lambda _: submit_batch.drain(),
    Work.APPLY_DELIVERY: lambda delivery_id: apply_delivery(int(delivery_id)),
    Work.FETCH_RESULT: fetch.fetch_result,
    Work.POLL: poll.poll,
    Work.CANCEL_AT_FAL: cancel.cancel_at_fal,
    Work.FAIL_OUTCOME_UNKNOWN: sweep.fail_outcome_unknown,
    Work.DELIVER: lambda delivery_id: deliver.deliver(int(delivery_id)),
    # No retries here: a file whose failure may pass stays unrecorded for the next sweep.
    Work.STORE_FILES: store.store_files,
}
