"""What a user asks for, from Python, the HTTP API or the CLI: submit a job, cancel it,
read it, re-apply a stored delivery. Each runs its step, which commits, and then enqueues
the step's follow-ups."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from falbridge.models.db import snapshot, transaction
from falbridge.models.jobs import get_job
from falbridge.models.states import EventSource
from falbridge.models.tables import Job
from falbridge.worker.accept import Accepted, SubmitItem, accept
from falbridge.worker.accept_batch import Refusal, accept_batch
from falbridge.worker.apply.reapply import Reapplied, reapply
from falbridge.worker.cancel import Cancellation, request_cancel
from falbridge.worker.notify.job_callbacks import JobCallbacks
from falbridge.worker.tasks import enqueue_follow_ups


def submit(
    endpoint_id: str,
    input: Mapping[str, Any],
    *,
    external_id: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    callbacks: JobCallbacks | None = None,
    source: EventSource = EventSource.API,
    options: Mapping[str, Any] | None = None,
) -> tuple[Job, bool]:
    """Validate, store as pending, enqueue the submit; returns (job, created), the job with
    its files and events loaded. If Redis is down the job waits, pending, for the sweeper."""
    item = SubmitItem(endpoint_id, input, external_id, metadata, callbacks, options)
    accepted = accept(item, source=source)
    enqueue_follow_ups(accepted.follow_ups)
    return accepted.job, accepted.created


def submit_batch(
    items: Sequence[SubmitItem], *, source: EventSource = EventSource.API
) -> list[Accepted | Refusal]:
    """`submit` for many jobs: one result per item, in order (accept_batch), and the new
    jobs' submits enqueued after the one commit that stored them."""
    results = accept_batch(items, source=source)
    enqueue_follow_ups(work for done in results if isinstance(done, Accepted) for work in done.follow_ups)
    return results


def cancel(job_id: uuid.UUID | str) -> tuple[Job | None, Cancellation]:
    requested = request_cancel(job_id)
    enqueue_follow_ups(requested.follow_ups)
    return get(job_id), requested.outcome


def get(job_id: uuid.UUID | str, *, full: bool = False) -> Job | None:
    with snapshot() if full else transaction() as s:
        return get_job(s, job_id, full=full)


def reapply_delivery(delivery_id: int) -> Reapplied | None:
    """Apply a stored delivery unless it was processed already (None: no such delivery),
    then enqueue what applying it calls for, as the worker's task does."""
    reapplied = reapply(delivery_id)
    if reapplied is not None:
        enqueue_follow_ups(reapplied.follow_ups)
    return reapplied
