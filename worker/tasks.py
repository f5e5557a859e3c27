"""Celery tasks. Each takes ids only and is safe to run twice (acks_late redelivers)."""

from __future__ import annotations

import logging
import random

from falbridge.worker import callbacks, queue_ops, submission
from falbridge.worker.celery_app import celery_app, enqueue
from falbridge.worker.fal import RetryableError
from falbridge.worker.settings import settings

log = logging.getLogger(__name__)


def _backoff(retries: int, retry_after: float | None) -> float:
    # fal's Retry-After wins; otherwise exponential with jitter, capped at a minute.
    if retry_after is not None:
        return min(retry_after, 300.0)
    return min(60.0, 0.5 * 2**retries) * random.uniform(0.5, 1.5)


@celery_app.task(bind=True, name="falbridge.submit_job", max_retries=None)
def submit_job(self, job_id: str) -> str:
    try:
        outcome = submission.submit(job_id)
    except RetryableError as exc:
        if self.request.retries >= settings().submit_max_retries:
            submission.give_up(job_id, exc)
            return "gave up"
        raise self.retry(countdown=_backoff(self.request.retries, exc.retry_after), exc=exc)
    log.info("submit %s: %s", job_id, outcome)
    return outcome


@celery_app.task(bind=True, name="falbridge.process_delivery", max_retries=None)
def process_delivery(self, delivery_id: int) -> str:
    outcome, fetch_for = callbacks.process_delivery(int(delivery_id))
    if fetch_for is not None:
        enqueue(fetch_result, fetch_for)
    log.info("delivery %s: %s", delivery_id, outcome)
    return outcome


def _retrying(task, operation, *args) -> str:
    """Run an idempotent queue call; retryable failures retry the task with backoff (after
    max_retries the job is left to the sweeper, which asks again later)."""
    try:
        return operation(*args)
    except RetryableError as exc:
        raise task.retry(countdown=_backoff(task.request.retries, exc.retry_after), exc=exc)


@celery_app.task(bind=True, name="falbridge.fetch_result", max_retries=10)
def fetch_result(self, job_id: str) -> str:
    return _retrying(self, queue_ops.fetch_result, job_id)


@celery_app.task(bind=True, name="falbridge.cancel_job", max_retries=10)
def cancel_job(self, job_id: str) -> str:
    return _retrying(self, queue_ops.cancel_at_fal, job_id)


@celery_app.task(bind=True, name="falbridge.resubmit_job", max_retries=None)
def resubmit_job(self, job_id: str) -> str:
    """The reconciler's 'resubmit once' policy for a job whose first submit is unknown."""
    try:
        return submission.submit(job_id, resubmit=True)
    except RetryableError as exc:
        if self.request.retries >= settings().submit_max_retries:
            submission.give_up(job_id, exc)
            return "gave up"
        raise self.retry(countdown=_backoff(self.request.retries, exc.retry_after), exc=exc)


@celery_app.task(name="falbridge.poll_job")
def poll_job(job_id: str) -> str:
    # No retry: a failed poll is simply tried again by the next sweep.
    return queue_ops.poll(job_id)


def _apply_delivery_now(delivery_id: int) -> None:
    # Applied by the sweep itself, not enqueued: a delivery has no "re-driven" mark, so a
    # re-drive waiting in a backlog would be enqueued again by every sweep. It is a few
    # database statements, exactly what the process_delivery task would do.
    _outcome, fetch_for = callbacks.process_delivery(int(delivery_id))
    if fetch_for is not None:
        enqueue(fetch_result, fetch_for)


@celery_app.task(name="falbridge.reconcile")
def reconcile() -> dict:
    from falbridge.worker.reconcile import Actions, sweep

    report = sweep(
        Actions(
            submit=lambda job_id: enqueue(submit_job, job_id),
            process_delivery=_apply_delivery_now,
            fetch_result=lambda job_id: enqueue(fetch_result, job_id),
            poll=lambda job_id: enqueue(poll_job, job_id),
            resubmit=lambda job_id: enqueue(resubmit_job, job_id),
        )
    )
    if report.total():
        log.info("reconcile: %s", report)
    return report.__dict__
