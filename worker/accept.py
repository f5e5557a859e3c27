"""Accept a job: validate its input, store it as pending, and ask for its submit.

The submit is a follow-up, enqueued by the caller only after this commits, so a worker
never looks for a job that is not there yet; if the enqueue is lost (Redis down), the
sweeper finds the pending job.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from falbridge import config
from falbridge.models.db import transaction
from falbridge.models.jobs import create_job
from falbridge.models.states import EventSource
from falbridge.models.tables import Job
from falbridge.worker import followup
from falbridge.worker.fal import validate_endpoint_id, validate_input
from falbridge.worker.followup import FollowUp
from falbridge.worker.input_files import inline_local_files
from falbridge.worker.notify.job_callbacks import JobCallbacks, checked


class ExternalIdConflict(ValueError):
    """The external_id already names a job with a different endpoint or input."""

    def __init__(self, job: Job):
        super().__init__(
            f"external_id {job.external_id!r} already names job {job.id} "
            "with a different endpoint_id or input"
        )
        self.job = job


@dataclass(frozen=True)
class Accepted:
    job: Job  # with its files and events loaded
    created: bool
    follow_ups: tuple[FollowUp, ...]


def accept(
    endpoint_id: str,
    input: Mapping[str, Any],
    *,
    external_id: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    callbacks: JobCallbacks | None = None,
    source: EventSource = EventSource.API,
) -> Accepted:
    """Re-accepting an external_id returns the existing job and asks for nothing; a
    different endpoint or input under the same key is ExternalIdConflict. Bad input
    raises InputValidationError / ValueError (CallbackRefused for a callback) before
    anything is stored."""
    endpoint_id = validate_endpoint_id(endpoint_id)
    payload = validate_input(endpoint_id, inline_local_files(dict(input)))
    if callbacks is not None:
        callbacks = checked(callbacks, config.current().notify.networks())
    with transaction() as s:
        job, created = create_job(
            s,
            endpoint_id,
            payload,
            external_id=external_id,
            metadata=dict(metadata) if metadata is not None else None,
            callbacks=callbacks.columns() if callbacks is not None else None,
            source=source,
        )
    if not created:
        if job.endpoint_id != endpoint_id or job.input != payload:
            raise ExternalIdConflict(job)
        return Accepted(job, False, ())
    return Accepted(job, True, (followup.submit(job.id),))
