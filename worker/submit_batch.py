"""Submitting pending jobs in batches: claim, send concurrently, record in one transaction.

The single-job path's three steps (worker.submit), each done for a batch at once:
  1. claim (worker.claim): lease up to FALBRIDGE_SUBMIT_BATCH of the oldest pending jobs
     in one transaction, within the flow control's limits.
  2. send each to fal, no transaction open, concurrently over the process's one pooled
     client (worker.fal.get_client) from a small thread pool: the client, its error
     taxonomy and its pool are synchronous and thread-safe, so threads reuse all of them
     unchanged, where httpx's async client would be a second client with its own
     classification path and an event loop inside a Celery task.
  3. record every answer in one transaction, by the single-job rules: submitted (or
     finished first), outcome unknown, rejected; a refusal that may pass puts the job
     back to pending until its retry time (`submit_retry_at`), and one refusal too many
     fails it, as the single-job task's retries did.
A worker that dies during 2 leaves expired leases: whoever claims next sends those jobs
to outcome_unknown, as the single-job path does.
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from falbridge import config
from falbridge.models import transition_writes
from falbridge.models.db import transaction
from falbridge.models.states import JobStatus
from falbridge.models.tables import Job, utcnow
from falbridge.worker import metrics
from falbridge.worker.claim import claim_batch
from falbridge.worker.fal import (
    FinalError,
    InputValidationError,
    OutcomeUnknownError,
    RetryableError,
    Submission,
    get_client,
)
from falbridge.worker.fal.job_options import submit_headers
from falbridge.worker.followup import FollowUp
from falbridge.worker.submit import (
    Claim,
    Submitted,
    give_up_in,
    outcome_unknown_in,
    record_in,
    rejected_in,
    retry_delay,
)
from falbridge.worker.webhook_url import webhook_url

log = logging.getLogger(__name__)

Answer = Submission | RetryableError | OutcomeUnknownError | FinalError | InputValidationError


@dataclass
class BatchReport:
    outcomes: dict[uuid.UUID, Submitted] = field(default_factory=dict)
    follow_ups: list[FollowUp] = field(default_factory=list)
    retries: list[tuple[str, float]] = field(default_factory=list)  # (job id, after seconds)
    claimed: int = 0
    full: bool = False  # as many claimed as a batch holds: more may be waiting
    held: bool = False  # flow control kept jobs back
    wait_s: float | None = None  # the rate limit's wait for its next token

    def summary(self) -> str:
        counts = Counter(outcome.value for outcome in self.outcomes.values())
        held = ", flow control held jobs back" if self.held else ""
        return (
            f"{self.claimed} claimed: "
            + (", ".join(f"{n} {what}" for what, n in counts.items()) or "-")
            + held
        )


def submit_batch(limit: int | None = None) -> BatchReport:
    """Claim, send and record one batch (see the module's docstring)."""
    limit = limit or config.current().flow.batch
    batch = claim_batch(limit)
    report = BatchReport(dict(batch.settled), claimed=len(batch.claims), held=batch.held, wait_s=batch.wait_s)
    report.full = len(batch.claims) + len(batch.settled) >= limit
    if batch.claims:
        _record_answers(send(batch.claims), report)
    return report


# PostgreSQL's deadlock and serialization failures: the transaction was rolled back whole,
# and running it again is what PostgreSQL asks for.
_RETRY_SQLSTATES = ("40P01", "40001")
RECORD_ATTEMPTS = 3


def _record_answers(answers: list[tuple[Claim, Answer]], report: BatchReport) -> None:
    """Record in one transaction, run again if PostgreSQL chose it as a deadlock's victim:
    the recorder locks its jobs in id order, but a drain applying callbacks locks them in
    its deliveries' order, and fal's callbacks can come before the submit answers are
    recorded. Recording is idempotent, so a second run records the same."""
    kept = len(report.follow_ups), len(report.retries)
    for attempt in range(1, RECORD_ATTEMPTS + 1):
        try:
            with transaction() as s, transition_writes.held(s):  # two INSERTs, not two an event
                _record(s, answers, report)
            return
        except OperationalError as exc:
            if getattr(exc.orig, "sqlstate", None) not in _RETRY_SQLSTATES or attempt == RECORD_ATTEMPTS:
                raise
            log.warning(
                "recording a batch of %d: %s; again (attempt %d)", len(answers), exc.orig, attempt + 1
            )
            del report.follow_ups[kept[0] :], report.retries[kept[1] :]


@dataclass(frozen=True)
class Drained:
    outcome: str
    follow_ups: tuple[FollowUp, ...]


def drain() -> Drained:
    """Batches, here and now, until no more can go (`falbridge reconcile`)."""
    reports = [submit_batch()]
    while reports[-1].full and not reports[-1].held:
        reports.append(submit_batch())
    follow_ups = tuple(work for report in reports for work in report.follow_ups)
    return Drained(f"{sum(report.claimed for report in reports)} claimed", follow_ups)


def send(claims: Sequence[Claim]) -> list[tuple[Claim, Answer]]:
    """Each claim sent to fal; a lone one on this thread (no hand-off: the idle path)."""
    if len(claims) == 1:
        return [(claims[0], _send_one(claims[0]))]
    return list(zip(claims, _pool().map(_send_one, claims), strict=True))


def _send_one(claim: Claim) -> Answer:
    """The one place a batched job's request to fal is built and sent."""
    try:
        with metrics.fal_submit(claim.endpoint_id):
            return get_client().submit(
                claim.endpoint_id,
                claim.input,
                webhook_url=webhook_url(claim.job_id),
                headers=submit_headers(claim.options),
            )
    except (RetryableError, OutcomeUnknownError, FinalError, InputValidationError) as exc:
        return exc
    except Exception as exc:
        # Anything else may have happened after the request left: unknown, as a lease
        # left to expire would make it, but now rather than a lease period later.
        log.exception("submit of job %s raised", claim.job_id)
        return OutcomeUnknownError(f"submit raised {type(exc).__name__}: {exc}")


def _record(s: Session, answers: list[tuple[Claim, Answer]], report: BatchReport) -> None:
    ids = sorted(claim.job_id for claim, _ in answers)  # one lock order for every recorder
    locked = s.scalars(
        select(Job)
        .where(Job.id.in_(ids))
        .order_by(Job.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).all()
    jobs = {job.id: job for job in locked}
    for claim, answer in answers:
        job = jobs.get(claim.job_id)
        if job is None:
            report.outcomes[claim.job_id] = Submitted.MISSING
            continue
        report.outcomes[claim.job_id] = _record_one(s, job, answer, report)


def _record_one(s: Session, job: Job, answer: Answer, report: BatchReport) -> Submitted:
    if isinstance(answer, Submission):
        result = record_in(s, job, answer)
        report.follow_ups.extend(result.follow_ups)
        return result.outcome
    if isinstance(answer, OutcomeUnknownError):
        outcome_unknown_in(s, job, str(answer))
        return Submitted.OUTCOME_UNKNOWN
    if isinstance(answer, FinalError | InputValidationError):
        rejected_in(s, job, answer)
        return Submitted.REJECTED
    return _refused_for_now(s, job, answer, report)


def _refused_for_now(s: Session, job: Job, error: RetryableError, report: BatchReport) -> Submitted:
    """fal provably did not take it: back to pending until its retry time, or failed once
    FALBRIDGE_SUBMIT_MAX_RETRIES retries were refused (every attempt leased it once)."""
    if job.submit_attempts > config.current().submit.max_retries:
        give_up_in(s, job, error)
        return Submitted.GAVE_UP
    if job.status != JobStatus.PENDING.value:
        return Submitted.NOT_PENDING
    delay = retry_delay(job.submit_attempts - 1, error.retry_after)
    job.submit_lease_until = None
    job.submit_retry_at = utcnow() + timedelta(seconds=delay)
    report.retries.append((str(job.id), delay))
    return Submitted.WAITING


_pool_lock = threading.Lock()
_shared_pool: tuple[int, ThreadPoolExecutor] | None = None


def _pool() -> ThreadPoolExecutor:
    """The process's sending threads (rebuilt in a forked child, as the fal client is)."""
    global _shared_pool
    with _pool_lock:
        if _shared_pool is None or _shared_pool[0] != os.getpid():
            size = config.current().flow.concurrency
            _shared_pool = (os.getpid(), ThreadPoolExecutor(size, thread_name_prefix="falbridge-submit"))
        return _shared_pool[1]


def _reset_pool_lock_in_child() -> None:
    # A lock held by another thread at fork time would stay locked forever in the child.
    global _pool_lock
    _pool_lock = threading.Lock()


os.register_at_fork(after_in_child=_reset_pool_lock_in_child)
