"""The scheduled tasks: the sweeper (`falbridge.reconcile`) and the purge
(`falbridge.purge`), which `falbridge beat` enqueues, or a worker on the embedded default
runs itself (falbridge.worker.embedded_beat)."""

from __future__ import annotations

import logging
from typing import Any

from falbridge import config
from falbridge.worker import inline, purge, submit_wakeup, sweep
from falbridge.worker.celery_app import celery_app, enqueue
from falbridge.worker.followup import FollowUp, Work
from falbridge.worker.tasks import TASK_FOR

log = logging.getLogger(__name__)

# The sweeper runs these itself rather than enqueueing them: applying a delivery has no
# "re-driven" mark, so a re-drive waiting in a backlog would be enqueued again by every
# sweep; and failing a job is one small transaction.
SWEEP_RUNS_INLINE = frozenset({Work.APPLY_DELIVERY, Work.FAIL_OUTCOME_UNKNOWN})


@celery_app.task(name="falbridge.reconcile")
def reconcile() -> dict[str, Any]:
    """The sweeper, every FALBRIDGE_RECONCILE_INTERVAL_S (`falbridge beat`)."""
    report = sweep_now()
    return {**report.counts(), "errors": report.errors}


@celery_app.task(name="falbridge.purge")
def purge_old_jobs() -> dict[str, Any]:
    """The scheduled purge (FALBRIDGE_PURGE_OLDER_THAN; off while empty), every
    FALBRIDGE_PURGE_INTERVAL_S."""
    report = purge_now()
    return {} if report is None else {**report.rows, "files_deleted": report.files_deleted}


def purge_now() -> purge.PurgeReport | None:
    settings = config.current().purge
    age = settings.age()
    if age is None:
        return None
    report = purge.purge(age, compact=settings.compact, batch_size=settings.batch)
    if report.jobs:
        log.info("purge: %s", report.line())
    return report


def sweep_now() -> sweep.SweepReport:
    """One sweep: what it finds is enqueued, but for the work the sweep runs itself."""
    report = sweep.sweep(_enqueue_or_run, config.current().sweep)
    if report.total():
        log.info("reconcile: %s", report)
    return report


def _enqueue_or_run(work: FollowUp) -> None:
    if work.work is Work.SUBMIT_PENDING:
        submit_wakeup.request_drain()
    elif work.work in SWEEP_RUNS_INLINE:
        inline.run(work)
    else:
        enqueue(TASK_FOR[work.work], work.target)
