"""Celery tasks: each runs one step (falbridge.worker.submit, apply, fetch, poll, cancel,
sweep) and enqueues the follow-ups it returns. Each takes ids only and is safe to run
twice (acks_late redelivers).

Submits go in batches (falbridge.worker.submit_batch): a new job asks for a drain
(`submit_pending`, at most one queued: falbridge.worker.submit_wakeup); `submit_job` sends
one batch of the oldest pending jobs (its own among them, unless another worker took it),
for a retry at its time and the sweeper, and asks for a drain when more may be waiting.

Retry policy, per task: a refused submit waits with backoff (the job's submit_retry_at,
and a `submit_job` enqueued for then) until FALBRIDGE_SUBMIT_MAX_RETRIES, then fails the
job (fal provably never took it); the sweeper's resubmit retries itself likewise; fetch and
cancel retry up to 10 times, then leave the job to the sweeper; a poll never retries (the
next sweep polls again); applying a delivery needs no network and no retry.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from celery import Task

from falbridge import config
from falbridge.models import outbox, transitions
from falbridge.worker import (
    cancel,
    fetch,
    inbox_wakeup,
    observe,
    poll,
    side_by_side,
    submit,
    submit_wakeup,
)
from falbridge.worker.apply import drain
from falbridge.worker.apply.delivery import apply_delivery
from falbridge.worker.celery_app import celery_app, enqueue
from falbridge.worker.fal import RetryableError
from falbridge.worker.followup import FollowUp, Work
from falbridge.worker.notify import deliver, deliver_batch
from falbridge.worker.storage import dispatch as storage_dispatch
from falbridge.worker.storage import store, store_batch
from falbridge.worker.submit_batch import BatchReport, submit_batch

log = logging.getLogger(__name__)

FETCH_AND_CANCEL_RETRIES = 10


_backoff = submit.retry_delay
# A drain hands its worker back after this long (asking for the next drain if work
# remains), so a backlog never keeps callbacks and fetches waiting behind it.
DRAIN_BUDGET_S = 5.0
# After a batch failed (the database away, a deadlock three times over), the next drain
# waits this long rather than hammering whatever failed.
FAILED_BATCH_WAIT_S = 1.0


@celery_app.task(name="falbridge.submit_job")
def submit_job(job_id: str) -> str:
    """One batch of the oldest pending jobs: this job among them when nobody else took it
    first (on an idle system, only this job)."""
    report = _after_batch(submit_batch())
    log.info("submit (for %s): %s", job_id, report.summary())
    return report.summary()


@celery_app.task(name="falbridge.submit_pending")
def submit_pending() -> str:
    """Batches until no claimable job is left, flow control holds the rest back, or the
    drain's time is up."""
    submit_wakeup.drain_started()
    started, batches, claimed = time.monotonic(), 0, 0
    while True:
        try:
            report = _after_batch(submit_batch(), ask_for_more=False)
        except Exception:
            # One failed batch (its jobs stay leased: the lease rules decide them) must not
            # end the drain for every job behind it: the next drain goes on with those.
            log.exception("submit drain: a batch failed; asking for the next drain")
            submit_wakeup.request_drain(countdown=FAILED_BATCH_WAIT_S)
            break
        batches, claimed = batches + 1, claimed + report.claimed
        if not report.full or report.held:
            break
        if time.monotonic() - started > DRAIN_BUDGET_S:
            submit_wakeup.request_drain()
            break
    log.info("submit drain: %d jobs claimed in %d batches", claimed, batches)
    return f"{claimed} claimed"


def _after_batch(report: BatchReport, *, ask_for_more: bool = True) -> BatchReport:
    enqueue_follow_ups(report.follow_ups)
    for job_id, delay in report.retries:
        enqueue(submit_job, job_id, countdown=delay)
    if report.wait_s is not None:
        submit_wakeup.request_drain(countdown=report.wait_s)  # the rate limit's next token
    elif ask_for_more and report.full and not report.held:
        submit_wakeup.request_drain()
    return report


@celery_app.task(bind=True, name="falbridge.resubmit_job", max_retries=None)
def resubmit_job(self: Task, job_id: str) -> str:
    """The sweeper's 'resubmit once' policy for a job whose first submit is unknown."""
    try:
        result = submit.submit(job_id, resubmit=True)
    except RetryableError as exc:
        if self.request.retries >= config.current().submit.max_retries:
            result = submit.give_up(job_id, exc)
        else:
            raise self.retry(countdown=_backoff(self.request.retries, exc.retry_after), exc=exc) from None
    enqueue_follow_ups(result.follow_ups)
    log.info("resubmit %s: %s", job_id, result.outcome)
    return result.outcome.value


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
    inbox_wakeup.release_wake()
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
    if inbox_wakeup.claim_wake() and not enqueue(drain_inbox):
        inbox_wakeup.release_wake()


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
    _retry_soon(int(delivery_id), done)
    return done.outcome.value


@celery_app.task(name="falbridge.deliver_events")
def deliver_events(delivery_ids: list[int]) -> dict[str, int]:
    """The first attempt of each delivery one commit made, in waves sent side by side
    (falbridge.worker.notify.deliver_batch); each retry goes on by itself as deliver_event."""
    outcomes: Counter[str] = Counter()
    for delivery_id, done in deliver_batch.deliver_all([int(i) for i in delivery_ids]):
        outcomes[done.outcome.value if done is not None else "error"] += 1
        if done is not None:
            _retry_soon(delivery_id, done)
    return dict(outcomes)


def _retry_soon(delivery_id: int, done: deliver.Delivered) -> None:
    if done.retry_in_s is not None:
        enqueue(deliver_event, delivery_id, countdown=done.retry_in_s)


def _dispatch_deliveries(delivery_ids: Sequence[int]) -> None:
    """The outbox's dispatcher in every process that enqueues: the new deliveries of a
    commit, after it (falbridge.models.outbox), as one task (or a few, when many)."""
    for chunk in side_by_side.chunks(delivery_ids):
        enqueue(deliver_events, chunk)


outbox.set_dispatcher(_dispatch_deliveries)


@celery_app.task(bind=True, name="falbridge.store_files", max_retries=None)
def store_files(self: Task, job_id: str, attempts_before: int = 0) -> str:
    """A completed job's result files into the storage backend; a failure that may pass
    retries with backoff, FALBRIDGE_STORE_RETRIES times, then the file is recorded missing.
    `attempts_before`: the runs already made elsewhere (store_jobs_files' first one)."""
    retries = self.request.retries + attempts_before
    report = _store(job_id, retries)
    if report.outcome is store.StoreOutcome.RETRY:
        raise self.retry(countdown=_backoff(retries, None))
    return report.outcome.value


@celery_app.task(name="falbridge.store_jobs_files")
def store_jobs_files(job_ids: list[str]) -> dict[str, int]:
    """The first run of store_files for each job one commit completed, in waves downloaded
    side by side (falbridge.worker.storage.store_batch); a job whose files need another run
    goes on by itself as store_files."""
    outcomes: Counter[str] = Counter()
    with outbox.dispatch_together():  # each job's files_stored event: one task for all
        stored = store_batch.store_all(list(job_ids))
    for job_id, report in stored:
        outcomes[report.outcome.value if report is not None else "error"] += 1
        if report is not None and _observed(job_id, report) is store.StoreOutcome.RETRY:
            enqueue(store_files, job_id, 1, countdown=_backoff(0, None))
    return dict(outcomes)


def _store(job_id: str, retries: int) -> store.StoreReport:
    """One run; retries: the runs made before it."""
    report = store.store_files(job_id, attempt=retries + 1, final=retries >= config.current().storage.retries)
    _observed(job_id, report)
    return report


def _observed(job_id: str, report: store.StoreReport) -> store.StoreOutcome:
    """The run counted and logged; its outcome."""
    if report.outcome is store.StoreOutcome.RETRY:
        observe.files_stored(report, final=False)
        log.info("store %s: retrying: %s", job_id, "; ".join(report.retry_reasons)[:500])
    else:
        stored, missing = report.stored, report.missing
        log.info("store %s: %s (%d stored, %d missing)", job_id, report.outcome, stored, missing)
        observe.files_stored(report, final=True)
    return report.outcome


def _dispatch_stores(job_ids: Sequence[str]) -> None:
    for chunk in side_by_side.chunks(job_ids):
        enqueue(store_jobs_files, chunk)


storage_dispatch.set_dispatcher(_dispatch_stores)


def _after_transitions(moves: Sequence[transitions.Transition]) -> None:
    observe.job_transitions(moves)  # the dispatcher it set for itself, kept
    submit_wakeup.after_transitions(moves)  # a slot freed: the submitter's wake-up


transitions.committed.set_dispatcher(_after_transitions)
submit_wakeup.set_enqueuer(lambda countdown: enqueue(submit_pending, countdown=countdown))


TASK_FOR: dict[Work, Task] = {
    Work.SUBMIT: submit_job,
    Work.SUBMIT_PENDING: submit_pending,
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
        if work.work is Work.SUBMIT_PENDING:
            submit_wakeup.request_drain()
            continue
        by_number = work.work in (Work.APPLY_DELIVERY, Work.DELIVER)
        target: object = int(work.target) if by_number else work.target
        enqueue(TASK_FOR[work.work], target)
