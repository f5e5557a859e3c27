"""What the flow's steps report once they have happened: metrics (worker.metrics) and one
log line per significant event (falbridge.logs). Job transitions come from the models'
after-commit hand-off, so only committed ones are counted."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from falbridge.logs import event
from falbridge.models import transitions
from falbridge.models.states import TERMINAL, JobStatus
from falbridge.worker import metrics

if TYPE_CHECKING:
    from falbridge.worker.storage.store import StoreReport

log = logging.getLogger(__name__)


def job_transitions(moves: Sequence[transitions.Transition]) -> None:
    """Runs inside the session's commit: whatever fails here is logged, never raised, since
    the caller's transaction has committed and must not look failed."""
    try:
        _job_transitions(moves)
    except Exception as exc:
        log.warning("job transitions not counted: %s: %s", type(exc).__name__, exc)


def _job_transitions(moves: Sequence[transitions.Transition]) -> None:
    counted = metrics.get()
    for move in moves:
        event(
            "job.transition",
            f"job {move.job_id}: {move.from_status or 'new'} -> {move.to_status} ({move.source})",
            job_id=str(move.job_id),
            request_id=move.request_id,
            endpoint=move.endpoint_id,
            from_status=move.from_status,
            to_status=move.to_status,
            source=move.source,
        )
        # A job's own record of a later step (its files stored: completed -> completed)
        # is an event, not a transition: counted once, when the status changed.
        if counted is None or move.from_status == move.to_status:
            continue
        endpoint = metrics.endpoint(move.endpoint_id)
        if _accepted_by_fal(move):
            counted.jobs_submitted.labels(endpoint).inc()
        if JobStatus(move.to_status) in TERMINAL:
            counted.jobs_terminal.labels(endpoint, move.to_status).inc()
            if move.created_at is not None:
                took = max(0.0, (move.at - move.created_at).total_seconds())
                counted.job_duration.labels(endpoint, move.to_status).observe(took)


def _accepted_by_fal(move: transitions.Transition) -> bool:
    """The move that first shows fal holds the job: usually pending -> submitted, but a
    callback that beats the submit's answer takes it from pending straight to its end, and
    that job was submitted all the same. A job refused or failed before fal answered has
    no request id."""
    before_fal = move.from_status is None or JobStatus(move.from_status).rank < JobStatus.SUBMITTED.rank
    return (
        before_fal
        and move.request_id is not None
        and JobStatus(move.to_status).rank >= JobStatus.SUBMITTED.rank
    )


transitions.committed.set_dispatcher(job_transitions)


def delivery_received(
    outcome: str, delivery_id: int | None, request_id: str | None, reason: str | None
) -> None:
    """A fal callback: stored (new or duplicate), rejected (with its reason code), or
    refused for now (JWKS unavailable)."""
    metrics.webhook(outcome, reason if outcome == "rejected" else None)
    event(
        f"delivery.{outcome}",
        f"callback {outcome}" + (f": {reason}" if reason else ""),
        delivery_id=delivery_id,
        request_id=request_id,
        reason=reason,
    )


def outgoing_attempt(result: str, delivery_id: int, event_id: int | None, job_id: str | None) -> None:
    counted = metrics.get()
    if counted is not None:
        counted.outgoing_attempts.labels(result).inc()
    if result in ("delivered", "exhausted"):
        event(
            f"event.{result}",
            f"outgoing delivery {delivery_id} {result}",
            delivery_id=delivery_id,
            event_id=event_id,
            job_id=job_id,
        )


def sweeper_actions(counts: Mapping[str, int]) -> None:
    counted = metrics.get()
    for kind, n in counts.items():
        if not n:
            continue
        if counted is not None:
            counted.sweeper_actions.labels(kind).inc(n)
        event("sweep.action", f"sweeper: {kind}={n}", kind=kind, count=n)


def files_stored(report: StoreReport, *, final: bool) -> None:
    """One run of the storing task: `final` when its failures were recorded as missing."""
    counted = metrics.get()
    if counted is None:
        return
    counted.stored_files.labels("stored").inc(report.stored)
    counted.stored_files.labels("missing").inc(report.missing)
    counted.stored_bytes.inc(report.bytes)
    if report.failures:
        counted.storage_failures.labels(str(final).lower()).inc(report.failures)
