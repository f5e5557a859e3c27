"""Claiming pending jobs in a batch: step 1 of the batched submit (worker.send_batch).

One short transaction, no network: the oldest claimable pending jobs are locked (`FOR
UPDATE SKIP LOCKED` on PostgreSQL, so claimers never wait on each other's rows; SQLite
serialises every writing transaction anyway), each is leased as the single-job path
leases one (worker.submit), and flow control (worker.flow) decides how many may go.
On the way, the rules of the single-job claim apply to whatever the batch meets: a job
whose cancel was asked for is cancelled here, and a pending job whose lease expired (a
worker died mid-submit) goes to `outcome_unknown`, never back to fal.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, or_, select, update
from sqlalchemy.orm import Session

from falbridge import config
from falbridge.models.db import transaction
from falbridge.models.jobs import transition
from falbridge.models.states import EventSource, JobStatus
from falbridge.models.tables import Job, utcnow
from falbridge.worker import flow
from falbridge.worker.apply.outcome import cancel_unsubmitted
from falbridge.worker.submit import Claim, Submitted


def claim_order() -> tuple[ColumnElement[Any], ...]:
    """The order pending jobs go out in: the one place it is decided. Normal priority
    before low (fal's own queue order, kept while jobs wait under our caps), then oldest first."""
    return ((Job.priority == "low").asc(), Job.created_at.asc(), Job.id.asc())


@dataclass
class Batch:
    claims: list[Claim] = field(default_factory=list)
    settled: dict[uuid.UUID, Submitted] = field(default_factory=dict)  # done in the claim
    held: bool = False  # flow control kept claimable jobs back
    wait_s: float | None = None  # the rate limit's: when the next token comes


def claim_batch(limit: int) -> Batch:
    """Lease up to `limit` pending jobs, oldest first, within the flow control's limits."""
    settings = config.current().flow
    batch = Batch()
    now = utcnow()
    with transaction() as s:
        flow.serialise_claims(s, settings)
        for job in _lease_expired(s, limit, now):
            # Whether fal got it cannot be known: the single-job claim's rule.
            reason = "submit lease expired: a worker died mid-submit"
            transition(
                s,
                job,
                JobStatus.OUTCOME_UNKNOWN,
                EventSource.SUBMIT,
                {"reason": reason},
                submit_lease_until=None,
            )
            batch.settled[job.id] = Submitted.OUTCOME_UNKNOWN
        slots = flow.room(s, settings)
        if slots.exhausted():
            batch.held = True
            return batch
        candidates = _claimable(s, limit, now, slots.full_endpoints())
        for job in [job for job in candidates if job.cancel_requested_at is not None]:
            cancel_unsubmitted(s, job)
            batch.settled[job.id] = Submitted.CANCELLED
        wanted = [job for job in candidates if job.cancel_requested_at is None]
        fitting = flow.admitted(wanted, slots)
        tokens = flow.take_tokens(s, len(fitting), settings, now)
        chosen = fitting[: tokens.granted]
        batch.held = len(chosen) < len(wanted) and len(candidates) > 0
        batch.wait_s = tokens.wait_s
        if chosen:
            _lease(s, [job.id for job in chosen], now + timedelta(seconds=config.current().submit.lease_s))
        batch.claims = [Claim(job.id, job.endpoint_id, dict(job.input), job.options) for job in chosen]
    return batch


def _lease_expired(s: Session, limit: int, now: datetime) -> Sequence[Job]:
    return s.scalars(
        select(Job)
        .where(Job.status == JobStatus.PENDING.value, Job.submit_lease_until <= now)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()


def _claimable(s: Session, limit: int, now: datetime, full_endpoints: list[str]) -> Sequence[Job]:
    query = select(Job).where(
        Job.status == JobStatus.PENDING.value,
        Job.submit_lease_until.is_(None),
        or_(Job.submit_retry_at.is_(None), Job.submit_retry_at <= now),
    )
    if full_endpoints:
        query = query.where(Job.endpoint_id.not_in(full_endpoints))
    return s.scalars(query.order_by(*claim_order()).limit(limit).with_for_update(skip_locked=True)).all()


def _lease(s: Session, job_ids: list[uuid.UUID], until: datetime) -> None:
    # One UPDATE for the batch; the ORM objects are not reused after this transaction.
    s.execute(
        update(Job)
        .where(Job.id.in_(job_ids))
        .values(submit_lease_until=until, submit_attempts=Job.submit_attempts + 1, submit_retry_at=None)
        .execution_options(synchronize_session=False)
    )
