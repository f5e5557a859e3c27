"""Hand a completed job to the storing task once the transition that completed it has
committed (never before: the task would find the job not yet completed, or completed by
a transaction that then rolled back). The worker's Celery task is the dispatcher
(falbridge.worker.tasks); where none is set, or the broker is down at that moment, the
sweeper finds the job's files unrecorded after FALBRIDGE_STORE_GRACE_S and re-drives it."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Sequence

from sqlalchemy import event as sa_event
from sqlalchemy.orm import Session

from falbridge import config

_KEY = "falbridge.storage.jobs_to_store"
Dispatcher = Callable[[Sequence[str]], None]
_dispatcher: Dispatcher | None = None
_lock = threading.Lock()


def store_after_commit(session: Session, job_id: uuid.UUID, endpoint_id: str) -> None:
    """The job's files are to be stored once `session` commits (if FALBRIDGE_STORE_FILES
    says so for this endpoint)."""
    if config.current().storage.stores(endpoint_id):
        session.info.setdefault(_KEY, []).append(str(job_id))


def set_dispatcher(dispatcher: Dispatcher | None) -> Dispatcher | None:
    """What this process does with jobs to store after their commit; returns the previous one."""
    global _dispatcher
    with _lock:
        previous, _dispatcher = _dispatcher, dispatcher
    return previous


@sa_event.listens_for(Session, "after_commit")
def _dispatch(session: Session) -> None:
    job_ids: list[str] = session.info.pop(_KEY, [])
    dispatcher = _dispatcher
    if job_ids and dispatcher is not None:
        dispatcher(job_ids)


@sa_event.listens_for(Session, "after_rollback")
def _forget(session: Session) -> None:
    session.info.pop(_KEY, None)
