"""The sweeper: the database is the source of truth, and this re-drives whatever fell
through the cracks. It only finds work; each piece is an idempotent step, so two sweepers
at once, or a sweep racing a webhook, cannot apply anything twice.

  1. pending jobs nobody is submitting (enqueue lost, worker killed)    -> submit
     (with flow control on: one drain, which takes them in order, within the caps)
  2. verified deliveries never applied (Redis down at the receiver)     -> apply_delivery
  3. jobs whose callback said "fetch the result" (payload_error)        -> fetch_result
  4. submitted / in_progress jobs silent for too long (dropped webhook) -> poll
  5. outcome_unknown jobs past their grace period                       -> resubmit or fail
  6. outgoing webhooks due (a retry's time came, a dispatch was lost,
     a worker died mid-attempt)                                         -> deliver
  7. jobs completed within the last day whose result files are still
     unrecorded FALBRIDGE_STORE_GRACE_S after (the store task lost)     -> store_files
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import exists, or_, select, update
from sqlalchemy.orm import Session

from falbridge import config
from falbridge.config import StorageConfig, SweepConfig
from falbridge.models import event_deliveries as outgoing
from falbridge.models.db import transaction
from falbridge.models.inbox import prune_rejected
from falbridge.models.jobs import lock_job, parse_uuid
from falbridge.models.states import TERMINAL, EventSource, JobStatus
from falbridge.models.tables import Job, ResultFile, StoredFile, WebhookDelivery, utcnow
from falbridge.worker import followup, observe
from falbridge.worker.apply.outcome import fail
from falbridge.worker.followup import FollowUp, Work

log = logging.getLogger(__name__)

# Which report counter each kind of work adds to.
_COUNTERS = {
    Work.SUBMIT: "resubmitted_pending",
    Work.SUBMIT_PENDING: "resubmitted_pending",
    Work.APPLY_DELIVERY: "redriven_deliveries",
    Work.FETCH_RESULT: "result_fetches",
    Work.POLL: "polled",
    Work.RESUBMIT: "outcome_unknown_resubmitted",
    Work.FAIL_OUTCOME_UNKNOWN: "outcome_unknown_failed",
    Work.DELIVER: "notifications_due",
    Work.STORE_FILES: "files_to_store",
}
# How far back the sweeper looks for files never stored: a bound on its scan of the history.
STORE_REDRIVE_WITHIN = timedelta(days=1)


@dataclass
class SweepReport:
    resubmitted_pending: int = 0
    redriven_deliveries: int = 0
    result_fetches: int = 0
    polled: int = 0
    outcome_unknown_resubmitted: int = 0
    outcome_unknown_failed: int = 0
    notifications_due: int = 0
    files_to_store: int = 0
    pruned_rejections: int = 0
    errors: list[str] = field(default_factory=list)

    def total(self) -> int:
        return sum(self.counts().values())

    def counts(self) -> dict[str, int]:
        return {
            **{counter: getattr(self, counter) for counter in _COUNTERS.values()},
            "pruned_rejections": self.pruned_rejections,
        }


def sweep(run: Callable[[FollowUp], object], settings: SweepConfig) -> SweepReport:
    """Find the work (one transaction), then `run` each piece: enqueue it (beat) or do it
    now (`falbridge reconcile`). One failing piece is reported and does not stop the rest.
    Last, rejected deliveries past their retention are deleted (a batch a sweep)."""
    report = SweepReport()
    for work in find_work(settings):
        counter = _COUNTERS[work.work]
        try:
            run(work)
        except Exception as exc:  # one bad job must not stop the sweep
            report.errors.append(f"{counter} {work.target}: {exc}")
            log.warning("sweep: %s %s failed: %s", work.work, work.target, exc)
            continue
        setattr(report, counter, getattr(report, counter) + 1)
    with transaction() as s:
        cutoff = utcnow() - timedelta(seconds=settings.rejected_retention_s)
        report.pruned_rejections = prune_rejected(s, received_before=cutoff, batch=settings.batch)
    observe.sweeper_actions(report.counts())
    return report


def find_work(
    settings: SweepConfig, storage: StorageConfig | None = None, now: datetime | None = None
) -> list[FollowUp]:
    """What fell through the cracks, in the order above. Rows it re-drives are marked so
    the next sweeps leave them alone for another grace period: otherwise, while the work
    waits in a backlog, every sweep enqueues it again and an overload feeds itself
    (bench/chaos.py: 50,000 queued tasks for 1,300 jobs). `now`: the sweep's clock, given
    so that a grace period's exact end can be checked."""
    now = now or utcnow()
    storage = storage or config.current().storage
    with transaction() as s:
        pending = _pending(s, settings, now)
        deliveries = _unapplied_deliveries(s, settings, now)
        fetches = _results_to_fetch(s, settings, now)
        silent = _silent(s, settings, now)
        unknown = _outcome_unknown(s, settings, now)
        notifications = outgoing.due(s, now, settings.batch)
        to_store = _files_to_store(s, storage, settings.batch, now)
        resubmit = [job_id for job_id, resubmitted_at in unknown if resubmitted_at is None]
        if settings.outcome_unknown_policy != "resubmit":
            resubmit = []
        # Under flow control the jobs wait their turn: one drain, no marks (worker.flow).
        drain = config.current().flow.active() and bool(pending)
        pending = [] if drain else pending
        if pending or fetches or resubmit or to_store:
            redriven = [*pending, *fetches, *resubmit, *to_store]
            s.execute(update(Job).where(Job.id.in_(redriven)).values(touched_at=now))
        if silent:  # the poll mark keeps touched_at: it measures fal's silence
            s.execute(
                update(Job).where(Job.id.in_(silent)).values(last_polled_at=now, touched_at=Job.touched_at)
            )
    return [
        *([followup.submit_pending()] if drain else []),
        *_each(Work.SUBMIT, pending),
        *_each(Work.APPLY_DELIVERY, deliveries),
        *_each(Work.FETCH_RESULT, fetches),
        *_each(Work.POLL, silent),
        *(
            FollowUp(Work.RESUBMIT if job_id in resubmit else Work.FAIL_OUTCOME_UNKNOWN, str(job_id))
            for job_id, _ in unknown
        ),
        *_each(Work.DELIVER, notifications),
        *_each(Work.STORE_FILES, to_store),
    ]


def _each(work: Work, targets: Sequence[object]) -> list[FollowUp]:
    return [FollowUp(work, str(target)) for target in targets]


def _ago(now: datetime, seconds: float) -> datetime:
    return now - timedelta(seconds=seconds)


# SKIP LOCKED below: a row a worker or another sweep holds is being handled right now.


def _pending(s: Session, settings: SweepConfig, now: datetime) -> Sequence[uuid.UUID]:
    return s.scalars(
        select(Job.id)
        .where(
            Job.status == JobStatus.PENDING.value,
            Job.touched_at < _ago(now, settings.pending_grace_s),
            or_(Job.submit_lease_until.is_(None), Job.submit_lease_until < now),
        )
        .limit(settings.batch)
        .with_for_update(skip_locked=True)
    ).all()


def _unapplied_deliveries(s: Session, settings: SweepConfig, now: datetime) -> Sequence[int]:
    return s.scalars(
        select(WebhookDelivery.id)
        .where(
            WebhookDelivery.processed_at.is_(None),
            WebhookDelivery.verified.is_(True),
            WebhookDelivery.received_at < _ago(now, settings.delivery_grace_s),
        )
        .order_by(WebhookDelivery.id)
        .limit(settings.batch)
    ).all()


def _results_to_fetch(s: Session, settings: SweepConfig, now: datetime) -> Sequence[uuid.UUID]:
    return s.scalars(
        select(Job.id)
        .where(
            Job.result_pending.is_(True),
            Job.status.not_in([status.value for status in TERMINAL]),
            Job.touched_at < _ago(now, settings.delivery_grace_s),
        )
        .limit(settings.batch)
        .with_for_update(skip_locked=True)
    ).all()


def _silent(s: Session, settings: SweepConfig, now: datetime) -> Sequence[uuid.UUID]:
    return s.scalars(
        select(Job.id)
        .where(
            Job.status.in_([JobStatus.SUBMITTED.value, JobStatus.IN_PROGRESS.value]),
            Job.request_id.is_not(None),
            Job.result_pending.is_(False),
            Job.touched_at < _ago(now, settings.silent_after_s),
            or_(Job.last_polled_at.is_(None), Job.last_polled_at < _ago(now, settings.poll_every_s)),
        )
        .limit(settings.batch)
        .with_for_update(skip_locked=True)
    ).all()


def _outcome_unknown(
    s: Session, settings: SweepConfig, now: datetime
) -> Sequence[tuple[uuid.UUID, datetime | None]]:
    rows = s.execute(
        select(Job.id, Job.resubmitted_at)
        .where(
            Job.status == JobStatus.OUTCOME_UNKNOWN.value,
            Job.touched_at < _ago(now, settings.outcome_unknown_grace_s),
        )
        .limit(settings.batch)
        .with_for_update(skip_locked=True)
    ).all()
    return [(row.id, row.resubmitted_at) for row in rows]


def _files_to_store(s: Session, storage: StorageConfig, batch: int, now: datetime) -> Sequence[uuid.UUID]:
    """Completed jobs (within STORE_REDRIVE_WITHIN) with a result file that has no stored
    record FALBRIDGE_STORE_GRACE_S after they were last touched; none when storing is off."""
    endpoints = storage.endpoints()
    if endpoints == ():
        return []
    unrecorded = select(ResultFile.id).where(
        ResultFile.job_id == Job.id,
        ~exists().where(StoredFile.job_id == ResultFile.job_id, StoredFile.path == ResultFile.path),
    )
    query = select(Job.id).where(
        Job.status == JobStatus.COMPLETED.value,
        Job.touched_at < _ago(now, storage.grace_s),
        Job.touched_at > now - STORE_REDRIVE_WITHIN,
        exists(unrecorded),
    )
    if endpoints is not None:
        query = query.where(Job.endpoint_id.in_(endpoints))
    return s.scalars(query.limit(batch).with_for_update(of=Job, skip_locked=True)).all()


def fail_outcome_unknown(job_id: str) -> bool:
    """The `fail` policy, and the end of a resubmission that also stayed unknown: no
    callback came within the grace period, so the job fails. False if it moved on."""
    job_uuid = parse_uuid(job_id)
    with transaction() as s:
        job = lock_job(s, job_uuid) if job_uuid else None
        if job is None or job.status != JobStatus.OUTCOME_UNKNOWN.value:
            return False
        return fail(
            s,
            job,
            EventSource.RECONCILE,
            error="submit outcome unknown and no callback arrived within the grace period",
            error_type="submit_outcome_unknown",
        )
