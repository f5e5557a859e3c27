"""Deliver one event to one subscription: claim, send once, record.

1. claim the delivery (a conditional UPDATE to in_flight with a lease; whoever loses does
   nothing) and read what its message needs (Core, falbridge.models.event_message), in
   one transaction committed before anything is sent;
2. with no transaction open, POST the signed body to the subscriber: the URL's address
   checked again and connected to as checked, no redirect followed (a 3xx is a failure),
   FALBRIDGE_NOTIFY_TIMEOUT_S per attempt, the answer's first KiB kept;
3. record the attempt and the outcome in one transaction (the outcome's UPDATE, the
   attempt's INSERT, the subscription's health): any 2xx delivers; 410 Gone
   disables the subscription; anything else schedules the next attempt
   (falbridge.worker.notify.schedule, Retry-After honoured on 429/503) or, after the
   last, leaves the delivery exhausted (a dead letter, replayable). A run of failures
   longer than FALBRIDGE_NOTIFY_DISABLE_AFTER_S disables the subscription.

A job's own callbacks go the same way: its notify_url is a POST signed with the
deployment's notify secret, its on_complete task a publish to the user's queue
(falbridge.worker.notify.hook); neither touches a subscription's health.

At least once: a worker killed after sending and before recording leaves the delivery
in flight; once its lease expires the sweeper re-drives it and the event is sent again,
under the same webhook-id, for the subscriber to deduplicate.
"""

from __future__ import annotations

import enum
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx
from sqlalchemy.orm import Session

from falbridge import config
from falbridge.config import Config, NotifyConfig
from falbridge.models import event_deliveries as deliveries
from falbridge.models import subscriptions
from falbridge.models.db import transaction
from falbridge.models.event_deliveries import AttemptResult, Claim
from falbridge.models.outbox import redrive_grace_s
from falbridge.models.secrets import SecretUnreadable
from falbridge.models.tables import utcnow
from falbridge.worker import observe
from falbridge.worker.download.connections import client_for
from falbridge.worker.download.safe_get import pinned
from falbridge.worker.notify import hook, schedule
from falbridge.worker.notify.address import AddressRefused, check
from falbridge.worker.notify.prepare import HookCall, Prepared, Request, claim_and_prepare_all

HEAD_BYTES = 1024
# A retry due this soon is sent back to the broker with a countdown; later ones wait in
# the database for the sweeper (never a long countdown the broker would redeliver).
SHORT_WAIT_S = 60.0


class Outcome(enum.StrEnum):
    DELIVERED = "delivered"
    RETRYING = "retrying"
    EXHAUSTED = "exhausted"
    NOT_DUE = "not_due"  # another worker has it, or it is delivered, or not due yet


@dataclass(frozen=True)
class Delivered:
    outcome: Outcome
    retry_in_s: float | None = None  # RETRYING soon: when to enqueue it again


def deliver(delivery_id: int, cfg: Config | None = None) -> Delivered:
    """One attempt, counted and (delivered or exhausted) logged."""
    cfg = cfg or config.current()
    # The claim and the reading of its message share a transaction, committed before
    # anything is sent.
    with transaction() as s:
        claimed = claim_and_prepare(s, delivery_id, cfg)
    if claimed is None:
        return Delivered(Outcome.NOT_DUE)
    sent = send_prepared(claimed, cfg)
    with transaction() as s:
        done = record_in(s, sent, cfg.notify)
    observed(sent, done)
    return done


def observed(sent: Sent, done: Delivered) -> None:
    """Count and log an attempt that settled its delivery (not one a newer claim overtook)."""
    if done.outcome is not Outcome.NOT_DUE:
        claim = sent.claimed
        observe.outgoing_attempt(done.outcome.value, claim.delivery_id, claim.event_id, sent.job_id)


def claim_and_prepare(s: Session, delivery_id: int, cfg: Config) -> tuple[Claim, Prepared] | None:
    """The delivery claimed (None: not due, or another worker has it) and what to send:
    a wave of one (falbridge.worker.notify.prepare)."""
    [(_, prepared)] = claim_and_prepare_all(s, [delivery_id], cfg)
    return prepared


@dataclass(frozen=True)
class Sent:
    """A claimed delivery's attempt, made (result) or not to be made (`gone`: why)."""

    claimed: Claim
    result: AttemptResult | None
    gone: str | None = None
    job_id: str | None = None


def send_prepared(prepared: tuple[Claim, Prepared], cfg: Config) -> Sent:
    """The attempt, with no transaction open."""
    claimed, request = prepared
    if isinstance(request, SecretUnreadable):
        return Sent(claimed, AttemptResult(None, 0, error=str(request)))
    if isinstance(request, str):  # the subscription is gone or disabled
        return Sent(claimed, None, gone=request)
    if isinstance(request, HookCall):
        return Sent(claimed, hook.send(request.task_name, request.queue, request.job_id, request.event_id))
    return Sent(claimed, send(request, cfg.notify), job_id=request.job_id)


def send(request: Request, notify: NotifyConfig) -> AttemptResult:
    """One POST; every failure is an AttemptResult, never an exception."""
    started = time.perf_counter()
    try:
        parts, address = check(request.url, notify.networks())
        target, host, tls_name = pinned(parts, address)
        client = client_for(target, tls_name.get("sni_hostname", ""), httpx.Timeout(notify.timeout_s))
        with client.stream(
            "POST", target, content=request.body, headers={**request.headers, **host}, extensions=tls_name
        ) as response:
            head = _head(response)
            waited = schedule.retry_after(response.status_code, response.headers.get("retry-after"), utcnow())
            return AttemptResult(response.status_code, _ms(started), head, _error_of(response), waited)
    except AddressRefused as exc:
        return AttemptResult(None, _ms(started), error=f"refused: {exc}")
    except httpx.HTTPError as exc:
        return AttemptResult(None, _ms(started), error=f"{type(exc).__name__}: {exc}"[:1000])


def _head(response: httpx.Response) -> str:
    taken = bytearray()
    for chunk in response.iter_raw():
        taken += chunk
        if len(taken) >= HEAD_BYTES:
            break
    # PostgreSQL's text holds no NUL.
    return bytes(taken[:HEAD_BYTES]).decode("utf-8", "replace").replace("\x00", "\ufffd")


def _error_of(response: httpx.Response) -> str | None:
    if response.is_success:
        return None
    if response.is_redirect:
        location = response.headers.get("location", "?")[:200]
        return f"redirect ({response.status_code}) to {location}: not followed"
    return f"HTTP {response.status_code}"


def _ms(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)


def record_in(s: Session, sent: Sent, notify: NotifyConfig) -> Delivered:
    """The attempt and the outcome it makes, in the caller's transaction."""
    return record_all_in(s, [sent], notify)[sent.claimed.delivery_id]


def record_all_in(s: Session, sent: Sequence[Sent], notify: NotifyConfig) -> dict[int, Delivered]:
    """A wave's attempts and the outcomes they make, by delivery id, in the caller's
    transaction: a settling UPDATE each, then the attempts' rows in one INSERT and the
    subscriptions' health (their successes in one UPDATE)."""
    now = utcnow()
    done: dict[int, Delivered] = {}
    made: list[tuple[Claim, AttemptResult]] = []
    health: list[tuple[uuid.UUID, AttemptResult]] = []
    for attempt in sent:
        claimed, result = attempt.claimed, attempt.result
        if result is None:
            deliveries.settle(s, claimed, status="exhausted", next_attempt_at=None, last_error=attempt.gone)
            done[claimed.delivery_id] = Delivered(Outcome.EXHAUSTED)
            continue
        outcome, values = _outcome(claimed, result, notify, now)
        # Settled first: its UPDATE locks the delivery, so a deletion waits for the
        # attempt's row. Not settled: overtaken by a newer claim (the attempt is still
        # recorded, the state is the newer claim's), or deleted with its subscription.
        if not deliveries.settle(s, claimed, **values) and not deliveries.exists(s, claimed.delivery_id):
            done[claimed.delivery_id] = Delivered(Outcome.NOT_DUE)
            continue
        done[claimed.delivery_id] = outcome
        made.append((claimed, result))
        if claimed.subscription_id is not None:  # None: a job's own callback, no health to keep
            health.append((claimed.subscription_id, result))
    deliveries.add_attempts(s, made, now)
    _keep_health(s, health, notify, now)
    return done


def _keep_health(
    s: Session, results: list[tuple[uuid.UUID, AttemptResult]], notify: NotifyConfig, now: datetime
) -> None:
    """Each subscription's health after its attempts, in their order: a subscription that
    only succeeded ends its run of failures (one UPDATE for all of them); one that
    failed gets its results one by one, as each would have been recorded alone (a
    success after a failure ends the run the failure began)."""
    by_subscription: dict[uuid.UUID, list[AttemptResult]] = {}
    for subscription_id, result in results:
        by_subscription.setdefault(subscription_id, []).append(result)
    succeeded = [i for i, made in by_subscription.items() if all(r.succeeded for r in made)]
    subscriptions.note_successes(s, succeeded)
    for subscription_id, made in by_subscription.items():
        if subscription_id in succeeded:
            continue
        for result in made:
            if result.succeeded:
                subscriptions.note_success(s, subscription_id)
            elif result.status_code == 410:
                subscriptions.disable(
                    s, subscription_id, f"the subscriber answered 410 Gone at {now.isoformat()}"
                )
            else:
                subscriptions.note_failure(s, subscription_id, now, notify.disable_after_s)


def _outcome(
    claimed: Claim, result: AttemptResult, notify: NotifyConfig, now: datetime
) -> tuple[Delivered, dict[str, object]]:
    """What the attempt makes of the delivery, and the delivery's columns saying so."""
    last = {"last_status_code": result.status_code, "last_error": result.error}
    if result.succeeded:
        return Delivered(Outcome.DELIVERED), {
            "status": "delivered",
            "delivered_at": now,
            "next_attempt_at": None,
            **last,
        }
    wait = (
        None
        if result.status_code == 410
        else schedule.next_wait(claimed.attempt, notify.schedule_scale, result.retry_after_s)
    )
    if wait is None:
        return Delivered(Outcome.EXHAUSTED), {"status": "exhausted", "next_attempt_at": None, **last}
    soon = wait if wait <= SHORT_WAIT_S else None
    return Delivered(Outcome.RETRYING, soon), {**_retry_values(now, wait), **last}


def _retry_values(now: datetime, wait: float) -> dict[str, object]:
    due = now + timedelta(seconds=wait)
    # A short wait goes back to the broker at once (a countdown): the sweeper leaves it
    # alone for a grace period after it is due. A long one is the sweeper's from then on.
    redrive = due + timedelta(seconds=redrive_grace_s()) if wait <= SHORT_WAIT_S else due
    return {"status": "pending", "next_attempt_at": due, "redrive_after": redrive}
