"""Hand a completed job to the storing task once the transition that completed it has
committed (never before: the task would find the job not yet completed, or completed by
a transaction that then rolled back). The worker's Celery task is the dispatcher
(falbridge.worker.tasks); where none is set, or the broker is down at that moment, the
sweeper finds the job's files unrecorded after FALBRIDGE_STORE_GRACE_S and re-drives it."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence

from sqlalchemy.orm import Session

from falbridge import config
from falbridge.models.after_commit import AfterCommit

Dispatcher = Callable[[Sequence[str]], None]
_jobs_to_store: AfterCommit[str, str] = AfterCommit("falbridge.storage.jobs_to_store", str)


def store_after_commit(session: Session, job_id: uuid.UUID, endpoint_id: str) -> None:
    """The job's files are to be stored once `session` commits (if FALBRIDGE_STORE_FILES
    says so for this endpoint)."""
    if config.current().storage.stores(endpoint_id):
        _jobs_to_store.add(session, [str(job_id)])


def set_dispatcher(dispatcher: Dispatcher | None) -> Dispatcher | None:
    """What this process does with jobs to store after their commit; returns the previous one."""
    return _jobs_to_store.set_dispatcher(dispatcher)
