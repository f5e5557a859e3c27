"""The sweeper: the database is the source of truth, and this re-drives whatever fell
through the cracks. Every step only enqueues (or runs) idempotent work, so two sweepers
at once, or a sweep racing a webhook, cannot apply anything twice.

  1. pending jobs nobody is submitting (enqueue lost, worker killed)    -> submit_job
  2. verified deliveries never processed (Redis down at the receiver)   -> process_delivery
  3. jobs whose callback said "fetch the result" (payload_error)        -> fetch_result
  4. submitted / in_progress jobs silent for too long (dropped webhook) -> poll status
  5. outcome_unknown jobs past their grace period                       -> policy
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import or_, select, update

from falbridge.models.db import transaction
from falbridge.models.states import JobStatus
from falbridge.models.tables import Job, WebhookDelivery, utcnow

log = logging.getLogger(__name__)

POLICIES = ("resubmit", "fail")


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    return float(raw) if raw else default


@dataclass(frozen=True)
class ReconcileSettings:
    pending_grace_s: float = 60.0
    delivery_grace_s: float = 30.0
    silent_after_s: float = 300.0
    poll_every_s: float = 60.0
    outcome_unknown_grace_s: float = 600.0
    outcome_unknown_policy: str = "resubmit"
    batch: int = 500

    @classmethod
    def from_env(cls) -> ReconcileSettings:
        policy = os.environ.get("FALBRIDGE_OUTCOME_UNKNOWN_POLICY", "resubmit")
        if policy not in POLICIES:
            raise ValueError(f"FALBRIDGE_OUTCOME_UNKNOWN_POLICY must be one of {POLICIES}, not {policy!r}")
        return cls(
            pending_grace_s=_env_float("FALBRIDGE_PENDING_GRACE_S", cls.pending_grace_s),
            delivery_grace_s=_env_float("FALBRIDGE_DELIVERY_GRACE_S", cls.delivery_grace_s),
            silent_after_s=_env_float("FALBRIDGE_SILENT_AFTER_S", cls.silent_after_s),
            poll_every_s=_env_float("FALBRIDGE_POLL_EVERY_S", cls.poll_every_s),
            outcome_unknown_grace_s=_env_float(
                "FALBRIDGE_OUTCOME_UNKNOWN_GRACE_S", cls.outcome_unknown_grace_s
            ),
            outcome_unknown_policy=policy,
            batch=int(_env_float("FALBRIDGE_RECONCILE_BATCH", cls.batch)),
        )


@dataclass
class SweepReport:
    resubmitted_pending: int = 0
    redriven_deliveries: int = 0
    result_fetches: int = 0
    polled: int = 0
    outcome_unknown_resubmitted: int = 0
    outcome_unknown_failed: int = 0
    errors: list[str] = field(default_factory=list)

    def total(self) -> int:
        return (
            self.resubmitted_pending
            + self.redriven_deliveries
            + self.result_fetches
            + self.polled
            + self.outcome_unknown_resubmitted
            + self.outcome_unknown_failed
        )


@dataclass(frozen=True)
class Actions:
    """What a sweep does with what it finds: enqueue (beat) or run inline (CLI)."""

    submit: Callable[[str], object]
    process_delivery: Callable[[int], object]
    fetch_result: Callable[[str], object]
    poll: Callable[[str], object]
    resubmit: Callable[[str], object]


def sweep(actions: Actions, settings: ReconcileSettings | None = None) -> SweepReport:
    settings = settings or ReconcileSettings.from_env()
    now = utcnow()
    report = SweepReport()
    with transaction() as s:
        # SKIP LOCKED: a row a worker or another sweep holds is being handled right now.
        pending = s.scalars(
            select(Job.id)
            .where(
                Job.status == JobStatus.PENDING.value,
                Job.updated_at < now - timedelta(seconds=settings.pending_grace_s),
                or_(Job.submit_lease_until.is_(None), Job.submit_lease_until < now),
            )
            .limit(settings.batch)
            .with_for_update(skip_locked=True)
        ).all()
        deliveries = s.scalars(
            select(WebhookDelivery.id)
            .where(
                WebhookDelivery.processed_at.is_(None),
                WebhookDelivery.verified.is_(True),
                WebhookDelivery.received_at < now - timedelta(seconds=settings.delivery_grace_s),
            )
            .order_by(WebhookDelivery.id)
            .limit(settings.batch)
        ).all()
        fetches = s.scalars(
            select(Job.id)
            .where(
                Job.result_pending.is_(True),
                Job.status.not_in(
                    [st.value for st in (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED)]
                ),
                Job.updated_at < now - timedelta(seconds=settings.delivery_grace_s),
            )
            .limit(settings.batch)
            .with_for_update(skip_locked=True)
        ).all()
        silent = s.scalars(
            select(Job.id)
            .where(
                Job.status.in_([JobStatus.SUBMITTED.value, JobStatus.IN_PROGRESS.value]),
                Job.request_id.is_not(None),
                Job.result_pending.is_(False),
                Job.updated_at < now - timedelta(seconds=settings.silent_after_s),
                or_(
                    Job.last_polled_at.is_(None),
                    Job.last_polled_at < now - timedelta(seconds=settings.poll_every_s),
                ),
            )
            .limit(settings.batch)
            .with_for_update(skip_locked=True)
        ).all()
        unknown = s.execute(
            select(Job.id, Job.resubmitted_at)
            .where(
                Job.status == JobStatus.OUTCOME_UNKNOWN.value,
                Job.updated_at < now - timedelta(seconds=settings.outcome_unknown_grace_s),
            )
            .limit(settings.batch)
            .with_for_update(skip_locked=True)
        ).all()
        resubmit = [
            job_id
            for job_id, resubmitted_at in unknown
            if settings.outcome_unknown_policy == "resubmit" and resubmitted_at is None
        ]
        # Mark what this sweep re-drives so the next sweeps leave it alone for another
        # grace period. Otherwise, while the re-driven task waits in a backlog, every sweep
        # enqueues it again and an overload feeds itself (bench/chaos.py: 50,000 queued
        # tasks for 1,300 jobs). The poll mark keeps updated_at: it measures fal's silence.
        if pending or fetches or resubmit:
            s.execute(update(Job).where(Job.id.in_([*pending, *fetches, *resubmit])).values(updated_at=now))
        if silent:
            s.execute(
                update(Job).where(Job.id.in_(silent)).values(last_polled_at=now, updated_at=Job.updated_at)
            )

    def run(action, arg, counter: str) -> None:
        try:
            action(arg)
            setattr(report, counter, getattr(report, counter) + 1)
        except Exception as exc:  # one bad job must not stop the sweep
            report.errors.append(f"{counter} {arg}: {exc}")
            log.warning("reconcile %s %s failed: %s", counter, arg, exc)

    for job_id in pending:
        run(actions.submit, str(job_id), "resubmitted_pending")
    for delivery_id in deliveries:
        run(actions.process_delivery, delivery_id, "redriven_deliveries")
    for job_id in fetches:
        run(actions.fetch_result, str(job_id), "result_fetches")
    for job_id in silent:
        run(actions.poll, str(job_id), "polled")
    for job_id, _resubmitted_at in unknown:
        if job_id in resubmit:
            run(actions.resubmit, str(job_id), "outcome_unknown_resubmitted")
        else:
            run(fail_outcome_unknown, str(job_id), "outcome_unknown_failed")
    return report


def fail_outcome_unknown(job_id: str) -> None:
    from falbridge.models.jobs import lock_job, parse_uuid
    from falbridge.models.states import EventSource
    from falbridge.worker.outcomes import fail

    with transaction() as s:
        job = lock_job(s, parse_uuid(job_id))
        if job is not None and job.status == JobStatus.OUTCOME_UNKNOWN.value:
            fail(
                s,
                job,
                EventSource.RECONCILE,
                error="submit outcome unknown and no callback arrived within the grace period",
                error_type="submit_outcome_unknown",
            )


def inline_actions() -> Actions:
    """Do the work in this process, now (`falbridge reconcile`): no broker needed."""
    from falbridge.worker import callbacks, queue_ops, submission

    def process(delivery_id: int) -> None:
        _outcome, fetch_for = callbacks.process_delivery(delivery_id)
        if fetch_for is not None:
            queue_ops.fetch_result(fetch_for)

    return Actions(
        submit=submission.submit,
        process_delivery=process,
        fetch_result=queue_ops.fetch_result,
        poll=queue_ops.poll,
        resubmit=lambda job_id: submission.submit(job_id, resubmit=True),
    )
