"""Apply one stored, verified delivery (a fal callback) to its job: the one path every
delivery takes (apply_claimed), whether the drain (worker/apply/drain.py), a task, the
sweeper or `falbridge reconcile` runs it. The delivery rows are read and marked with
SQLAlchemy Core (models/inbox.py); the job goes through the ORM's state machine."""

from __future__ import annotations

import enum
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.orm import Session

from falbridge.models.db import transaction
from falbridge.models.inbox import Claimed, Processed, claim_one, record_processed
from falbridge.models.jobs import (
    lock_job,
    lock_job_by_request_id,
    lock_jobs,
    parse_uuid,
    transition,
)
from falbridge.models.states import EventSource, JobStatus
from falbridge.models.tables import Job, utcnow
from falbridge.worker import followup
from falbridge.worker.apply.callback import Callback, CallbackFormatError, parse_callback
from falbridge.worker.apply.outcome import complete, error_fields_from_body, fail
from falbridge.worker.followup import FollowUp
from falbridge.worker.webhook_url import proves


class DeliveryOutcome(enum.StrEnum):
    """What applying a delivery did; stored in webhook_deliveries.outcome."""

    SKIPPED = "skipped"  # unknown id, already processed, or not verified
    UNPARSEABLE = "unparseable"
    UNKNOWN_JOB = "unknown_job"
    REQUEST_ID_MISMATCH = "request_id_mismatch"
    DUPLICATE = "duplicate"  # the job was already terminal
    RESULT_FETCH_NEEDED = "result_fetch_needed"
    APPLIED = "applied"


@dataclass(frozen=True)
class Applied:
    outcome: DeliveryOutcome
    follow_ups: tuple[FollowUp, ...] = ()


def apply_delivery(delivery_id: int) -> Applied:
    """Apply one stored, verified delivery; the result says what to do next.

    Safe to run any number of times: a processed delivery is skipped, and the job's state
    machine ignores a second terminal outcome.
    """
    with transaction() as s:
        claimed = claim_one(s, delivery_id)
        if claimed is None:
            return Applied(DeliveryOutcome.SKIPPED)
        applied, processed = apply_claimed(s, claimed)
        record_processed(s, [processed])
        return applied


def apply_claimed(s: Session, delivery: Claimed) -> tuple[Applied, Processed]:
    """Apply a delivery its caller has claimed (and will mark processed, in the same
    transaction, with what this returns)."""
    return _apply(s, delivery, _parsed(delivery), None)


def apply_batch(s: Session, claimed: Sequence[Claimed]) -> list[tuple[Applied, Processed]]:
    """apply_claimed for each delivery, in order, every job the batch may touch (by its
    callback's request id, or by the job id its URL proves) locked first in one statement,
    in id order as the submit recorder locks them: no lock taken later out of that order
    (a deadlock with the recorder when fal called back before its answer was recorded),
    and no locking query, nor flush of the last delivery's writes, per delivery."""
    parsed = [(delivery, _parsed(delivery)) for delivery in claimed]
    named = {callback.request_id for _, callback in parsed if isinstance(callback, Callback)}
    proven = {delivery.id: job_id for delivery in claimed if (job_id := _proven_job(delivery)) is not None}
    locked = Locked(lock_jobs(s, named, proven.values()), proven)
    return [_apply(s, delivery, callback, locked) for delivery, callback in parsed]


class Locked:
    """A batch's jobs, locked up front, found as _find_job finds one; `proven`: the job id
    each delivery's URL proves (by delivery id), checked once for the batch."""

    def __init__(self, jobs: Sequence[Job], proven: dict[int, uuid.UUID]) -> None:
        self._by_request = {job.request_id: job for job in jobs if job.request_id}
        self._by_id = {job.id: job for job in jobs}
        self._proven = proven

    def find(self, delivery: Claimed, callback: Callback) -> Job | None:
        job = self._by_request.get(callback.request_id)
        if job is not None:
            return job
        proven = self._proven.get(delivery.id)
        return self._by_id.get(proven) if proven is not None else None


def _proven_job(delivery: Claimed) -> uuid.UUID | None:
    """The job id the delivery's URL names, if its token proves we made that URL."""
    claimed, token = _url_claim(delivery)
    return claimed if claimed is not None and proves(claimed, token) else None


def _parsed(delivery: Claimed) -> Callback | CallbackFormatError:
    try:
        return parse_callback(delivery.body)
    except CallbackFormatError as exc:
        return exc


def _apply(
    s: Session, delivery: Claimed, callback: Callback | CallbackFormatError, locked: Locked | None
) -> tuple[Applied, Processed]:
    if isinstance(callback, CallbackFormatError):
        return _done(delivery, DeliveryOutcome.UNPARSEABLE, error=str(callback))
    # Found and locked in one statement, before writing anything that references it: the
    # foreign-key check of the delivery's job_id takes a share lock on the job row, and two
    # processes each holding that share lock while asking for FOR UPDATE deadlock (seen
    # on PostgreSQL).
    found = locked.find(delivery, callback) if locked is not None else None
    job = found or _find_job(s, delivery, callback)
    if job is None:
        return _done(delivery, DeliveryOutcome.UNKNOWN_JOB, error=_why_unknown(delivery))
    if job.request_id is None:
        job.request_id = callback.request_id
    elif job.request_id != callback.request_id:
        # Signed by fal, but for someone else's request: never let it touch this job.
        error = f"request id {callback.request_id} is not this job's"
        return _done(delivery, DeliveryOutcome.REQUEST_ID_MISMATCH, job.id, error)
    job.gateway_request_id = callback.gateway_request_id or job.gateway_request_id
    job.webhook_count += 1
    if job.job_status.is_terminal:
        return _done(delivery, DeliveryOutcome.DUPLICATE, job.id)
    if callback.needs_fetch:
        job.result_pending = True
        _taken_by_fal(s, job, delivery)
        return _done(
            delivery, DeliveryOutcome.RESULT_FETCH_NEEDED, job.id, then=(followup.fetch_result(job.id),)
        )
    detail = {"delivery_id": delivery.id}
    if callback.ok:
        complete(s, job, callback.payload, EventSource.WEBHOOK, detail)
    else:
        error_type, error_detail = error_fields_from_body(callback.payload)
        fail(
            s,
            job,
            EventSource.WEBHOOK,
            error=callback.error or "fal reported an error",
            error_type=error_type,
            error_detail=error_detail,
            detail=detail,
        )
    return _done(delivery, DeliveryOutcome.APPLIED, job.id)


def _taken_by_fal(s: Session, job: Job, delivery: Claimed) -> None:
    """A job still pending or outcome_unknown (the submit's answer never recorded: its
    worker died) that fal calls back for was provably taken: submitted, lease dropped.
    Left pending, an expired lease would make it outcome_unknown and the sweeper would
    resubmit and then fail it while its result waits at fal (seen in bench/chaos.py).
    The state machine leaves a job already submitted or further as it is."""
    detail = {"delivery_id": delivery.id, "request_id": job.request_id, "reason": "fal called back"}
    submitted_at = job.submitted_at or utcnow()
    transition(
        s,
        job,
        JobStatus.SUBMITTED,
        EventSource.WEBHOOK,
        detail,
        submit_lease_until=None,
        submitted_at=submitted_at,
    )


def _done(
    delivery: Claimed,
    outcome: DeliveryOutcome,
    job_id: uuid.UUID | None = None,
    error: str | None = None,
    then: tuple[FollowUp, ...] = (),
) -> tuple[Applied, Processed]:
    return Applied(outcome, then), Processed(delivery.id, outcome.value, job_id, error)


def _find_job(s: Session, delivery: Claimed, callback: Callback) -> Job | None:
    """The callback's job, locked for the rest of the transaction."""
    job = lock_job_by_request_id(s, callback.request_id)
    if job is not None:
        return job
    # Not bound yet: the callback beat the submit response, or the submit's outcome is
    # unknown. The job id in our URL says which job it is, if the URL's token proves we
    # made that URL; the request-id check in apply_claimed keeps a bound job safe.
    proven = _proven_job(delivery)
    return lock_job(s, proven) if proven is not None else None


def _url_claim(delivery: Claimed) -> tuple[uuid.UUID | None, str | None]:
    token = delivery.headers.get("query_token")
    return parse_uuid(str(delivery.headers.get("query_job_id") or "")), token if isinstance(
        token, str
    ) else None


def _why_unknown(delivery: Claimed) -> str:
    claimed, token = _url_claim(delivery)
    if claimed is None:
        return "no job has this request id, and the URL names none"
    if not proves(claimed, token):
        return f"no job has this request id, and the URL's job {claimed} comes without a valid token"
    return f"no job has this request id, and job {claimed} does not exist"
