"""Ask fal about a job whose callback is overdue (dropped, or still being retried)."""

from __future__ import annotations

import enum
import uuid

from sqlalchemy import update

from falbridge.models.db import transaction
from falbridge.models.jobs import get_job, lock_job, parse_uuid, transition
from falbridge.models.states import EventSource, JobStatus
from falbridge.models.tables import Job, utcnow
from falbridge.worker.fal import FinalError, ModelError, get_client
from falbridge.worker.fetch import FetchOutcome, expire_job, fetch_result
from falbridge.worker.queue_ref import request_ref


class PollOutcome(enum.StrEnum):
    NOTHING_TO_POLL = "nothing to poll"  # no such job, not accepted by fal, or terminal
    NOT_FOUND = "not found at fal"  # accepted once, so forgotten: its retention passed
    IN_QUEUE = "in queue"
    IN_PROGRESS = "in progress"
    UNKNOWN_STATUS = "unknown status"  # a status fal added since this was written


def poll(job_id: uuid.UUID | str) -> PollOutcome | FetchOutcome:
    """One status call; a COMPLETED job's result is fetched at once (the fetch's outcome
    is returned). RetryableError propagates: the next sweep polls again."""
    job_uuid = parse_uuid(job_id)
    with transaction() as s:
        job = get_job(s, job_uuid) if job_uuid else None
        if job_uuid is None or job is None or job.request_id is None or job.job_status.is_terminal:
            return PollOutcome.NOTHING_TO_POLL
        ref = request_ref(job)
        # Recorded before asking, so a failing poll is not retried every sweep; and
        # without moving touched_at, which measures silence from fal.
        s.execute(
            update(Job)
            .where(Job.id == job_uuid)
            .values(last_polled_at=utcnow(), poll_attempts=Job.poll_attempts + 1, touched_at=Job.touched_at)
        )
    try:
        status = get_client().status(ref)
    except ModelError:
        raise
    except FinalError as exc:
        if exc.status_code != 404:
            raise
        # fal gave this request id when it accepted the job; it forgets one only once the
        # result's retention has passed, so the result is gone with it.
        expire_job(job_uuid, EventSource.POLL, "fal answered 404 for the status; no callback arrived")
        return PollOutcome.NOT_FOUND
    if status.status == "COMPLETED":
        return fetch_result(job_uuid, EventSource.POLL)
    if status.status == "IN_PROGRESS":
        with transaction() as s:
            job = lock_job(s, job_uuid)
            if job is not None:
                transition(s, job, JobStatus.IN_PROGRESS, EventSource.POLL)
        return PollOutcome.IN_PROGRESS
    return PollOutcome.IN_QUEUE if status.status == "IN_QUEUE" else PollOutcome.UNKNOWN_STATUS
