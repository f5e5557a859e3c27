"""The outbox of outgoing webhooks: a job's status events are the events, and each one's
deliveries are written in the transaction of its transition.

Every transition writes a JobEvent (models.jobs.transition, conditional on the status it
read, so one transition is one event however many workers attempt it). Here, in the same
transaction, each enabled subscription that lists the event's type gets an
EventDelivery row, due now. After the commit, the process's dispatcher (the worker's
Celery `deliver` task, set by falbridge.worker.tasks) is handed the new deliveries' ids;
if it is unset or the broker is down, the sweeper finds them due and re-drives them.

Event types: `job.completed`, `job.failed`, `job.cancelled` for the terminal transitions,
`job.status_changed` for the others. A subscription that lists `job.status_changed` gets
every transition, the terminal ones under their own type. A job's own callbacks (its
`notify_url`, its `on_complete` Celery task) get its terminal event only.

`job.files_stored` is not a transition: once every result file of a completed job is
stored or recorded missing (falbridge.worker.storage), an event with source `store` (from
and to `completed`) is written in the transaction of the last file's record. Only the
subscriptions that list it get it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, select
from sqlalchemy.orm import Session

from falbridge import config
from falbridge.models.after_commit import AfterCommit
from falbridge.models.event_message import EventView
from falbridge.models.states import TERMINAL, EventSource, JobStatus
from falbridge.models.tables import Job, JobEvent, Subscription, utcnow

STATUS_CHANGED = "job.status_changed"
FILES_STORED = "job.files_stored"
TERMINAL_TYPES = tuple(sorted(f"job.{status.value}" for status in TERMINAL))
EVENT_TYPES = (STATUS_CHANGED, *TERMINAL_TYPES, FILES_STORED)
_SUBSCRIPTIONS = "falbridge.outbox.subscriptions"  # session.info key of the per-transaction read

Dispatcher = Callable[[Sequence[int]], None]


def event_type(to_status: str) -> str:
    status = JobStatus(to_status)
    return f"job.{status.value}" if status.is_terminal else STATUS_CHANGED


def type_of(event: JobEvent | EventView) -> str:
    """The event's type as subscribers see it."""
    return FILES_STORED if event.source == EventSource.STORE.value else event_type(event.to_status)


def wants(events: Iterable[str], type_: str) -> bool:
    """Whether a subscription listing `events` gets an event of `type_`."""
    listed = set(events)
    return type_ in listed or (STATUS_CHANGED in listed and type_ != FILES_STORED)


def fan_out(session: Session, event: JobEvent, job: Job) -> list[dict[str, Any]]:
    """The rows of the event's deliveries (all but their event_id), one per enabled
    subscription that wants it, and for a terminal event one per callback of the job's
    own (its notify_url, its on_complete task); falbridge.models.transition_writes writes them
    with the event, and they are dispatched after the commit."""
    type_ = type_of(event)
    now = utcnow()
    rows = [delivery_row(sub_id, now) for sub_id, events in _subscriptions(session) if wants(events, type_)]
    if type_ in TERMINAL_TYPES:
        rows += [delivery_row(None, now, target) for target in job_targets(job)]
    return rows


def _subscriptions(session: Session) -> list[tuple[Any, list[str]]]:
    """The enabled subscriptions (id, events), read once per transaction: a batch of
    transitions (a submit batch, a drain of the inbox) fans out to the same set, and the
    lock taken on them lasts until the transaction ends anyway.

    FOR KEY SHARE (PostgreSQL): a subscription being deleted is waited for and then not
    seen, rather than deleted under the delivery about to reference it (which would fail
    the transition's whole transaction). Shared with every other transition, and with
    updates that change no key (a subscription's health). Core, not the ORM: this runs on
    every transition, and the ORM's row handling was most of its cost."""
    transaction = session.get_transaction()
    cached = session.info.get(_SUBSCRIPTIONS)
    if cached is not None and cached[0] is transaction:
        known: list[tuple[Any, list[str]]] = cached[1]
        return known
    rows = session.connection().execute(_ENABLED_SUBSCRIPTIONS).all()
    subscriptions = [(row.id, list(row.events or [])) for row in rows]
    session.info[_SUBSCRIPTIONS] = (transaction, subscriptions)
    return subscriptions


_subscription = cast(Table, Subscription.__table__).c
# Built once: on the API's submit path, building this SELECT cost more than running it.
_ENABLED_SUBSCRIPTIONS = (
    select(_subscription.id, _subscription.events)
    .where(_subscription.enabled.is_(True))
    .with_for_update(read=True, key_share=True)
)


def job_targets(job: Job) -> list[str]:
    """The job's own callbacks, as EventDelivery targets."""
    return [
        target
        for target, wanted in (("notify_url", job.notify_url), ("on_complete", job.on_complete))
        if wanted
    ]


def delivery_row(subscription_id: Any, now: datetime, target: str = "subscription") -> dict[str, Any]:
    """A new delivery's columns but its id and event_id: pending, due now."""
    return {
        "subscription_id": subscription_id,
        "target": target,
        "status": "pending",
        "attempts": 0,
        "next_attempt_at": now,
        # Handed to the broker after the commit: the sweeper leaves it to its task for
        # FALBRIDGE_DELIVERY_GRACE_S, and re-drives it after that if the task was lost.
        "redrive_after": now + timedelta(seconds=redrive_grace_s()),
        "created_at": now,
    }


def redrive_grace_s() -> float:
    return config.current().sweep.delivery_grace_s


def dispatch_after_commit(session: Session, delivery_ids: Iterable[int]) -> None:
    """Hand these deliveries (written in `session`) to the dispatcher once it commits."""
    _new_deliveries.add(session, delivery_ids)


def dispatch_together() -> AbstractContextManager[None]:
    """The deliveries of every commit inside go to the dispatcher at its end, together."""
    return _new_deliveries.together()


def set_dispatcher(dispatcher: Dispatcher | None) -> Dispatcher | None:
    """What this process does with new deliveries after their commit; returns the one
    it replaces. None: nothing (the sweeper re-drives them)."""
    return _new_deliveries.set_dispatcher(dispatcher)


_new_deliveries: AfterCommit[int, int] = AfterCommit("falbridge.outbox.new_deliveries", int)
