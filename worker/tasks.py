"""Celery tasks: each runs one step (falbridge.worker.submit, apply, fetch, poll, cancel,
sweep) and enqueues the follow-ups it returns. Each takes ids only and is safe to run
twice (acks_late redelivers).

Retry policy, per task: a submit retries RetryableError with backoff until
FALBRIDGE_SUBMIT_MAX_RETRIES, then fails the job (fal provably never took it); fetch and
cancel retry up to 10 times, then leave the job to the sweeper; a poll never retries (the
next sweep polls again); applying a delivery needs no network and no retry.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from celery import Task

from falbridge import config
from falbridge.models import outbox
from falbridge.worker import cancel, drain_wakeup, fetch, inline, observe, poll, purge, submit, sweep
from falbridge.worker.apply import drain
from falbridge.worker.apply.delivery import apply_delivery
from falbridge.worker.celery_app import celery_app, enqueue
from falbridge.worker.fal import RetryableError
from falbridge.worker.followup import FollowUp, Work
from falbridge.worker.notify import deliver
from falbridge.worker.storage import dispatch as storage_dispatch
from falbridge.worker.storage import store

log = logging.getLogger(__name__)

FETCH_AND_CANCEL_RETRIES = 10
# The sweeper runs these itself rather than enqueueing them: applying a delivery has no
# "re-driven" mark, so a re-drive waiting in a backlog would be enqueued again by every
# sweep; and failing a job is one small transaction.
SWEEP_RUNS_INLINE = frozenset({Work.APPLY_DELIVERY, Work.FAIL_OUTCOME_UNKNOWN})


def _backoff(retries: int, retry_after: float | None) -> float:
    # fal's Retry-After wins; otherwise exponential with jitter, capped at a minute.
    if retry_after is not None:
        return min(retry_after, 300.0)
    ceiling: float = min(60.0, 0.5 * 2**retries)
    return ceiling * random.uniform(0.5, 1.5)


def _submit(task: Task, job_id: str, *, resubmit: bool) -> str:
    try:
        result = submit.submit(job_id, resubmit=resubmit)
    except RetryableError as exc:
        if task.request.retries >= config.current().submit.max_retries:
            result = submit.give_up(job_id, exc)
        else:
            raise task.retry(countdown=_backoff(task.request.retries, exc.retry_after), exc=exc) from None
    enqueue_follow_ups(result.follow_ups)
    log.info("submit %s: %s", job_id, result.outcome)
    return result.outcome.value


@celery_app.task(bind=True, name="falbridge.submit_job", max_retries=None)
def submit_job(self: Task, job_id: str) -> str:
    return _submit(self, job_id, resubmit=False)


@celery_app.task(bind=True, name="falbridge.resubmit_job", max_retries=None)
def resubmit_job(self: Task, job_id: str) -> str:
    """The sweeper's 'resubmit once' policy for a job whose first submit is unknown."""
    return _submit(self, job_id, resubmit=True)


@celery_app.task(name="falbridge.process_delivery")
def process_delivery(delivery_id: int) -> str:
    """One delivery: the sweeper's re-drive and messages queued before drain_inbox existed."""
    applied = apply_delivery(int(delivery_id))
    enqueue_follow_ups(applied.follow_ups)
    log.info("delivery %s: %s", delivery_id, applied.outcome)
    return applied.outcome.value


@celery_app.task(name="falbridge.drain_inbox")
def drain_inbox() -> dict[str, int]:
    """Apply every stored delivery not yet applied, a batch per transaction."""
    # Cleared before the first claim: a delivery committed from now on wakes another
    # drain, and one committed before it is claimed by this one.
    drain_wakeup.release_wake()
    settings = config.current().drain
    drained = drain.drain(settings.batch, settings.max_batches)
    enqueue_follow_ups(drained.follow_ups)
    if drained.more:
        wake_drainer()
    if drained.applied or drained.passed_over:
        log.info("drain: %s in %d batch(es)", dict(drained.outcomes), drained.batches)
    return dict(drained.outcomes)


def wake_drainer() -> None:
    """After a delivery's commit: publish a drain, unless one is published and waiting."""
    if drain_wakeup.claim_wake() and not enqueue(drain_inbox):
        drain_wakeup.release_wake()


def _retrying(task: Task, step: Callable[[str], Any], job_id: str) -> str:
    """Run an idempotent queue call; retryable failures retry the task with backoff (after
    the last retry the job is left to the sweeper, which asks again later)."""
    try:
        return str(step(job_id))
    except RetryableError as exc:
        raise task.retry(countdown=_backoff(task.request.retries, exc.retry_after), exc=exc) from None


@celery_app.task(bind=True, name="falbridge.fetch_result", max_retries=FETCH_AND_CANCEL_RETRIES)
def fetch_result(self: Task, job_id: str) -> str:
    return _retrying(self, fetch.fetch_result, job_id)


@celery_app.task(bind=True, name="falbridge.cancel_job", max_retries=FETCH_AND_CANCEL_RETRIES)
def cancel_job(self: Task, job_id: str) -> str:
    return _retrying(self, cancel.cancel_at_fal, job_id)


@celery_app.task(name="falbridge.poll_job")
def poll_job(job_id: str) -> str:
    return str(poll.poll(job_id))


@celery_app.task(name="falbridge.deliver_event")
def deliver_event(delivery_id: int) -> str:
    """One attempt of an outgoing webhook; a retry due soon comes back here with a
    countdown, a later one waits in the database for the sweeper."""
    done = deliver.deliver(int(delivery_id))
    if done.retry_in_s is not None:
        enqueue(deliver_event, int(delivery_id), countdown=done.retry_in_s)
    return done.outcome.value


def _dispatch_deliveries(delivery_ids: Sequence[int]) -> None:
    """The outbox's dispatcher in every process that enqueues: each new delivery, after
    the commit that made it (falbridge.models.outbox)."""
    for delivery_id in delivery_ids:
        enqueue(deliver_event, delivery_id)


outbox.set_dispatcher(_dispatch_deliveries)


@celery_app.task(bind=True, name="falbridge.store_files", max_retries=None)
def store_files(self: Task, job_id: str) -> str:
    """A completed job's result files into the storage backend; a failure that may pass
    retries with backoff, FALBRIDGE_STORE_RETRIES times, then the file is recorded missing."""
    retries = self.request.retries
    report = store.store_files(job_id, attempt=retries + 1, final=retries >= config.current().storage.retries)
    if report.outcome is store.StoreOutcome.RETRY:
        observe.files_stored(report, final=False)
        log.info("store %s: retrying: %s", job_id, "; ".join(report.retry_reasons)[:500])
        raise self.retry(countdown=_backoff(retries, None))
    log.info("store %s: %s (%d stored, %d missing)", job_id, report.outcome, report.stored, report.missing)
    observe.files_stored(report, final=True)
    return report.outcome.value


def _dispatch_stores(job_ids: Sequence[str]) -> None:
    for job_id in job_ids:
        enqueue(store_files, job_id)


storage_dispatch.set_dispatcher(_dispatch_stores)


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
    if work.work in SWEEP_RUNS_INLINE:
        inline.run(work)
    else:
        enqueue(_TASKS[work.work], work.target)


_TASKS: dict[Work, Task] = {
    Work.SUBMIT: submit_job,
    Work.RESUBMIT: resubmit_job,
    Work.APPLY_DELIVERY: process_delivery,
    Work.FETCH_RESULT: fetch_result,
    Work.POLL: poll_job,
    Work.CANCEL_AT_FAL: cancel_job,
    Work.DELIVER: deliver_event,
    Work.STORE_FILES: store_files,
}


def enqueue_follow_ups(follow_ups: Iterable[FollowUp]) -> None:
    """Enqueue each follow-up as its task (after the commit that called for it)."""
    for work in follow_ups:
        by_number = work.work in (Work.APPLY_DELIVERY, Work.DELIVER)
        target: object = int(work.target) if by_number else work.target
        enqueue(_TASKS[work.work], target)
