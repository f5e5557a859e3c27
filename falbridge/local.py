"""The Python API, in process: `falbridge.submit`, `get`, `list`, `cancel`, `live`, `wait`.

These talk to the database and the broker directly, so they need the same configuration
as a worker (DATABASE_URL, REDIS_URL; the embedded default without them). A service that
must not touch the database uses `falbridge.Client` instead: the same calls, over the HTTP
API, returning the same values.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from falbridge import config
from falbridge.errors import (
    AmbiguousJobId,
    ExternalIdConflict,
    InvalidInput,
    JobAlreadyFinished,
    JobNotFound,
    UploadFailed,
    require_input_mapping,
)
from falbridge.models.db import snapshot, transaction
from falbridge.models.feed import jobs_page
from falbridge.models.jobs import AmbiguousPrefix, get_job, resolve_job_id
from falbridge.models.listing import CursorError, JobFilters
from falbridge.models.metadata_filter import check_filter
from falbridge.models.serialize import job_detail, job_summary
from falbridge.models.states import EventSource
from falbridge.values import Job, JobPage, JobSummary, LiveStatus
from falbridge.waiting import Progress, wait_until_finished, watch_until_finished
from falbridge.worker import accept, actions
from falbridge.worker.cancel import Cancellation
from falbridge.worker.fal import InputValidationError
from falbridge.worker.fal.job_options import InvalidOptions, options_given
from falbridge.worker.notify.job_callbacks import CallbackRefused, JobCallbacks
from falbridge.worker.watch import watch


def submit(
    endpoint_id: str,
    input: Mapping[str, Any],
    *,
    external_id: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    notify_url: str | None = None,
    on_complete: str | None = None,
    on_complete_queue: str | None = None,
    priority: str | None = None,
    start_timeout: float | None = None,
    object_lifecycle: int | None = None,
    store_io: bool | None = None,
    tags: Mapping[str, str] | None = None,
) -> Job:
    """Store a job and queue its submit to fal; returns it (status `pending`).

    `pathlib.Path`, `bytes` and open binary file values in `input` are uploaded to fal
    storage and sent as URLs (UploadFailed, and nothing stored, if that fails), or sent
    inline as data URIs when small (FALBRIDGE_UPLOAD_THRESHOLD_BYTES). The same
    `external_id` again returns the job it names (nothing new is submitted), unless the
    endpoint or input differ: ExternalIdConflict. A bad endpoint id or an input the
    endpoint's schema refuses: InvalidInput, and nothing is stored.

    When the job ends, `notify_url` is POSTed its terminal event (signed with the
    deployment's notify secret), and the Celery task named `on_complete` is sent
    `(job_id, event_id)` on `on_complete_queue` (Celery's default queue otherwise): each
    at least once, the event id the same on every retry.

    fal's options for the job, sent as fal's headers on its submits (docs/api.md, "fal
    options"): `priority` "normal" or "low", `start_timeout` seconds (> 1) it may wait at
    fal before it starts, `object_lifecycle` seconds until fal deletes its output files,
    `store_io` False for fal to keep no JSON payloads, `tags` up to 10 key=value labels
    for fal's usage reports. Invalid ones: InvalidInput; the same `external_id` with other
    options: ExternalIdConflict.
    """
    return submit_as(
        EventSource.API,
        endpoint_id,
        input,
        external_id=external_id,
        metadata=metadata,
        callbacks=JobCallbacks(notify_url, on_complete, on_complete_queue),
        options=options_given(
            priority=priority,
            start_timeout=start_timeout,
            object_lifecycle=object_lifecycle,
            store_io=store_io,
            tags=tags,
        ),
    )


def submit_as(
    source: EventSource,
    endpoint_id: str,
    input: Mapping[str, Any],
    *,
    external_id: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    callbacks: JobCallbacks | None = None,
    options: Mapping[str, Any] | None = None,
) -> Job:
    """`submit`, recording who asked (the CLI says `cli` in the job's history)."""
    require_input_mapping(input)
    try:
        job, _created = actions.submit(
            endpoint_id,
            input,
            external_id=external_id,
            metadata=metadata,
            callbacks=callbacks,
            source=source,
            options=options,
        )
    except accept.ExternalIdConflict as exc:
        raise ExternalIdConflict(str(exc), str(exc.job.id)) from None
    except accept.UploadFailed as exc:
        raise UploadFailed(str(exc)) from None
    except CallbackRefused as exc:
        raise InvalidInput(str(exc), [{"field": exc.field, "message": exc.reason}]) from None
    except InvalidOptions as exc:
        raise InvalidInput(str(exc), exc.errors) from None
    except InputValidationError as exc:
        raise InvalidInput(str(exc), exc.errors, getattr(exc, "omitted", 0)) from None
    except ValueError as exc:  # the endpoint id, a local file
        raise InvalidInput(str(exc)) from None
    return Job.from_json(job_detail(job))


def get(job_id: str) -> Job:
    """The job, whole: its input, result, files and history. `job_id` may be a prefix of 8
    or more hex digits no other job id shares. JobNotFound, AmbiguousJobId."""
    with snapshot() as s:
        job = get_job(s, _resolved(s, job_id), full=True)
        if job is None:
            raise JobNotFound(str(job_id))
        return Job.from_json(job_detail(job))


def list(
    *,
    status: str | None = None,
    endpoint_id: str | None = None,
    external_id: str | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
    metadata: Mapping[str, Any] | None = None,
    updated_after: datetime | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> JobPage:
    """A page of jobs, `limit` (1-500) at a time; pass the page's `next_cursor` for the next.

    Newest first; or, with `updated_after` (and the cursors that follow from it), the
    changes feed: jobs whose status, result, error or files changed after that time, oldest
    change first, each change once it is FALBRIDGE_FEED_SETTLE_S old. Following the feed's
    `next_cursor` (never None there) sees every job's latest state. `metadata`: jobs whose
    metadata holds each of these keys with this value (a string, number, bool or None).
    """
    filters = JobFilters(
        status=status,
        endpoint_id=endpoint_id,
        external_id=external_id,
        created_after=created_after,
        created_before=created_before,
        metadata=tuple((metadata or {}).items()),
    )
    for key, value in filters.metadata:
        problem = check_filter(key, value)
        if problem is not None:
            raise InvalidInput(problem, [{"field": f"metadata[{key[:64]}]", "message": problem}])
    settle_s = config.current().api.feed_settle_s
    with transaction() as s:
        try:
            rows, next_cursor = jobs_page(
                s, filters, limit=limit, cursor=cursor, updated_after=updated_after, settle_s=settle_s
            )
        except CursorError:
            raise InvalidInput(
                "cursor is not one a listing returned",
                [{"field": "cursor", "message": "not a cursor from a previous page"}],
            ) from None
        return JobPage(tuple(JobSummary.from_json(job_summary(row)) for row in rows), next_cursor)


def cancel(job_id: str) -> Job:
    """Cancel a job: at once if fal has not got it yet, else fal is asked and its answer
    arrives as any outcome does. JobNotFound, or JobAlreadyFinished for a finished job."""
    with transaction() as s:
        full_id = _resolved(s, job_id)
    job, outcome = actions.cancel(full_id)
    if job is None:
        raise JobNotFound(str(job_id))
    if outcome is Cancellation.ALREADY_TERMINAL:
        raise JobAlreadyFinished(get(str(job.id)))
    return get(str(job.id))


def _resolved(session: Session, job_id: str) -> str:
    try:
        found = resolve_job_id(session, str(job_id))
    except AmbiguousPrefix:
        raise AmbiguousJobId(str(job_id)) from None
    if found is None:
        raise JobNotFound(str(job_id))
    return str(found)


def live(job_id: str) -> LiveStatus:
    """The job with what fal says of it right now: its queue position while queued, its log
    lines while running. Asks fal once (nothing when the job is finished or not yet at fal);
    a job fal reports running is recorded in_progress. JobNotFound, AmbiguousJobId."""
    with transaction() as s:
        full_id = uuid.UUID(_resolved(s, job_id))
    reading = watch(full_id)
    return LiveStatus.from_json({**get(str(full_id)).to_json(), "fal": reading.to_json()})


def wait(job_id: str, *, timeout: float = 300.0, on_progress: Progress | None = None) -> Job:
    """Block until the job is completed, failed or cancelled, and return it; WaitTimeout
    after `timeout` seconds. With `on_progress`, fal is asked for the job's live status
    (see `live`) while it runs and `on_progress` gets each change, fal's new log lines in
    `new_logs`; without it only the stored job is read."""
    if on_progress is None:
        return wait_until_finished(lambda: get(job_id), timeout=timeout)
    return watch_until_finished(lambda: live(job_id), timeout=timeout, on_progress=on_progress)
