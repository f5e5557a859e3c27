"""Accept a job: validate its input, store it as pending, and ask for its submit.

The submit is a follow-up, enqueued by the caller only after this commits, so a worker
never looks for a job that is not there yet; if the enqueue is lost (Redis down), the
sweeper finds the pending job.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from falbridge import config
from falbridge.models.db import transaction
from falbridge.models.jobs import create_job, input_files_of
from falbridge.models.states import EventSource
from falbridge.models.tables import Job
from falbridge.worker import followup
from falbridge.worker.fal import FalError, validate_endpoint_id, validate_input
from falbridge.worker.fal.job_options import checked_options
from falbridge.worker.fal.upload import upload_to_fal
from falbridge.worker.followup import FollowUp
from falbridge.worker.input_copies import keeping, uploaded_inputs
from falbridge.worker.input_files import prepare_input_files, with_digests, with_files_pending
from falbridge.worker.notify.job_callbacks import JobCallbacks, checked


class ExternalIdConflict(ValueError):
    """The external_id already names a job with a different endpoint, input or options."""

    def __init__(self, job: Job):
        super().__init__(
            f"external_id {job.external_id!r} already names job {job.id} "
            "with a different endpoint_id, input or options"
        )
        self.job = job


class InvalidEndpointId(ValueError):
    """The endpoint id is not one fal could have (worker.fal.endpoints says why)."""


class UploadFailed(Exception):
    """An input file could not be uploaded to fal storage; nothing was stored."""

    def __init__(self, cause: FalError):
        super().__init__(f"uploading an input file to fal storage failed: {cause}")
        self.cause = cause


@dataclass(frozen=True)
class Accepted:
    job: Job  # with its files and events loaded
    created: bool
    follow_ups: tuple[FollowUp, ...]


@dataclass(frozen=True)
class SubmitItem:
    """One job as a user submits it (POST /api/jobs, one batch item, `falbridge submit`)."""

    endpoint_id: str
    input: Mapping[str, Any]
    external_id: str | None = None
    metadata: Mapping[str, Any] | None = None
    callbacks: JobCallbacks | None = None
    options: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Prepared:
    """A job checked and its input files uploaded: ready to store."""

    endpoint_id: str
    payload: dict[str, Any]
    external_id: str | None
    metadata: dict[str, Any] | None
    callbacks: dict[str, str | None] | None
    options: dict[str, Any] | None
    source: EventSource


@dataclass(frozen=True)
class Stored:
    job: Job
    created: bool
    input_files: list[dict[str, Any]]  # the input's uploaded files, as recorded


def accept(item: SubmitItem, *, source: EventSource = EventSource.API) -> Accepted:
    """Re-accepting an external_id returns the existing job and asks for nothing; a
    different endpoint, input or options under the same key is ExternalIdConflict. Bad
    input raises InputValidationError / ValueError (CallbackRefused for a callback,
    InvalidOptions for fal options) before anything is stored; an input file fal storage
    would not take raises UploadFailed."""
    prepared = prepare(item, source=source)
    with transaction() as s:
        stored = store(s, prepared)
    return settle(prepared, stored)


def prepare(item: SubmitItem, *, source: EventSource = EventSource.API) -> Prepared:
    """Everything `accept` does before its transaction: the checks, then the uploads."""
    try:
        endpoint_id = validate_endpoint_id(item.endpoint_id)
    except ValueError as exc:
        raise InvalidEndpointId(str(exc)) from None
    fal_options = checked_options(item.options)
    callbacks = item.callbacks
    if callbacks is not None:
        callbacks = checked(callbacks, config.current().notify.networks())
    validate_input(endpoint_id, with_files_pending(dict(item.input)))  # before paying for uploads
    try:
        uploaded = prepare_input_files(
            dict(item.input), keeping(upload_to_fal), threshold=config.current().upload.threshold_bytes
        )[0]
    except FalError as exc:
        raise UploadFailed(exc) from exc
    return Prepared(
        endpoint_id,
        validate_input(endpoint_id, uploaded),
        item.external_id,
        dict(item.metadata) if item.metadata is not None else None,
        callbacks.columns() if callbacks is not None else None,
        fal_options,
        source,
    )


def store(s: Session, prepared: Prepared) -> Stored:
    """Insert the job in the caller's transaction (or find the one its external_id names)."""
    # Files uploaded just now and URLs from an earlier POST /api/files alike: each URL
    # uploaded through falbridge is described as its upload was recorded.
    recorded = [f.as_json() for f in uploaded_inputs(s, prepared.payload)]
    job, created = create_job(
        s,
        prepared.endpoint_id,
        prepared.payload,
        external_id=prepared.external_id,
        metadata=prepared.metadata,
        callbacks=prepared.callbacks,
        source=prepared.source,
        input_files=recorded,
        options=prepared.options,
    )
    return Stored(job, created, recorded)


def settle(prepared: Prepared, stored: Stored) -> Accepted:
    """After the commit: a new job asks for a drain of the pending jobs (at most one waits
    in the broker however many jobs arrive: falbridge.worker.submit_wakeup); one its
    external_id named already must be the same job (ExternalIdConflict otherwise) and asks
    for nothing."""
    job = stored.job
    if stored.created:
        return Accepted(job, True, (followup.submit_pending(),))
    # The same file sent again was uploaded again, to a new URL: compare digests.
    same_input = with_digests(job.input, input_files_of(job)) == with_digests(
        prepared.payload, stored.input_files
    )
    if job.endpoint_id != prepared.endpoint_id or not same_input or job.options != prepared.options:
        raise ExternalIdConflict(job)
    return Accepted(job, False, ())
