"""Claiming a wave of deliveries and reading what each sends, in one transaction and a
fixed number of statements, whatever the wave's size: the claims in one UPDATE, the
events with their jobs' columns in one SELECT, the files, stored copies and histories of
the jobs with a body to send in one each, the subscriptions in one; each subscription's
secrets decrypted once, the deployment's notify secret read once, each event's body made
once (two subscriptions of one event get the same bytes).

A statement per delivery (a claim, an event, three parts, a subscription) was most of
the CPU of an outgoing attempt; a delivery's own task (falbridge.worker.notify.deliver)
is a wave of one.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row
from sqlalchemy.orm import Session

from falbridge.config import Config, NotifyConfig
from falbridge.models import deployment_secrets, event_message, subscriptions
from falbridge.models import event_deliveries as deliveries
from falbridge.models.event_deliveries import Claim
from falbridge.models.event_message import EventOfJob
from falbridge.models.secrets import SecretUnreadable
from falbridge.models.tables import utcnow
from falbridge.worker.notify import payload, sign


@dataclass(frozen=True)
class Request:
    url: str
    body: bytes
    headers: dict[str, str]
    job_id: str | None = None  # for the log line of its outcome


@dataclass(frozen=True)
class HookCall:
    task_name: str
    queue: str | None
    job_id: str
    event_id: str


# What an attempt sends: a request, a task to publish; or why not (a string: nowhere to
# send; the secret unreadable: a failed attempt).
Prepared = Request | HookCall | str | SecretUnreadable
# Where to POST and the secrets to sign with (unreadable: a failed attempt); a string
# says why nowhere.
Target = tuple[str, list[str] | SecretUnreadable] | str


def lease_s(notify: NotifyConfig) -> float:
    # Longer than an attempt can take (connect, send, the first bytes of the answer).
    return 3 * notify.timeout_s + 30.0


def claim_and_prepare_all(
    s: Session, delivery_ids: Sequence[int], cfg: Config
) -> list[tuple[int, tuple[Claim, Prepared] | None]]:
    """Each id with its claim and what to send; None: not due, another worker has it (or
    the id came earlier in the wave)."""
    claims = deliveries.claim_all(s, delivery_ids, lease_s(cfg.notify))
    prepared = _prepare_all(s, list(claims.values()), cfg) if claims else {}
    out: list[tuple[int, tuple[Claim, Prepared] | None]] = []
    for i in delivery_ids:
        claim = claims.pop(i, None)  # an id twice in a wave is claimed once, as by two claims
        out.append((i, None if claim is None else (claim, prepared[i])))
    return out


def _prepare_all(s: Session, claims: list[Claim], cfg: Config) -> dict[int, Prepared]:
    now = utcnow()
    found = event_message.events_of_jobs(s, (c.event_id for c in claims))
    views = subscriptions.signing_views(
        s, (c.subscription_id for c in claims if c.subscription_id is not None and c.event_id in found)
    )
    signers = _Signers(s, cfg, now, views)
    done: dict[int, Prepared] = {}
    to_post: list[tuple[Claim, EventOfJob, str, list[str]]] = []
    for claim in claims:
        event = found.get(claim.event_id)
        if event is None:
            done[claim.delivery_id] = "event deleted"
            continue
        step = _step(claim, event, signers)
        if isinstance(step, (str, HookCall)):
            done[claim.delivery_id] = step
        elif isinstance(step[1], SecretUnreadable):  # FALBRIDGE_SECRET_KEY changed: a failed attempt
            done[claim.delivery_id] = step[1]
        else:
            to_post.append((claim, event, step[0], step[1]))
    bodies = _bodies(s, [event for _, event, _, _ in to_post])
    for claim, event, url, secrets in to_post:
        message_id = payload.message_id(claim.event_id)
        body = bodies[claim.event_id]
        headers = sign.headers(message_id, int(now.timestamp()), body, secrets)
        done[claim.delivery_id] = Request(url, body, headers, str(event.job.id))
    return done


def _step(claim: Claim, found: EventOfJob, signers: _Signers) -> HookCall | Target:
    """A task to publish, or where to POST (a string: why nowhere)."""
    job = found.job
    if claim.target == "on_complete":
        if not job.on_complete:
            return "the job has no on_complete task"
        message_id = payload.message_id(claim.event_id)
        return HookCall(job.on_complete, job.on_complete_queue, str(job.id), message_id)
    if claim.subscription_id is None:  # the job's notify_url, under the deployment's secret
        if not job.notify_url:
            return "the job has no notify_url"
        return job.notify_url, signers.notify()
    subscription = signers.views.get(claim.subscription_id)
    if subscription is None:
        return "subscription deleted"
    if not subscription.enabled:
        return f"subscription disabled: {subscription.disabled_reason or 'by a user'}"
    return subscription.url, signers.of(subscription)


class _Signers:
    """The wave's signing secrets, each decrypted once however many deliveries sign with
    it (an unreadable one is remembered as such, for each of its deliveries to fail)."""

    def __init__(self, s: Session, cfg: Config, now: datetime, views: dict[uuid.UUID, Row[Any]]):
        self.s, self.cfg, self.now, self.views = s, cfg, now, views
        self._secrets: dict[uuid.UUID | None, list[str] | SecretUnreadable] = {}

    def of(self, subscription: Row[Any]) -> list[str] | SecretUnreadable:
        if subscription.id not in self._secrets:
            self._secrets[subscription.id] = _readable(
                lambda: subscriptions.signing_secrets(self.cfg, subscription, self.now)
            )
        return self._secrets[subscription.id]

    def notify(self) -> list[str] | SecretUnreadable:
        """The deployment's notify secrets (its row read, or made, once a wave)."""
        if None not in self._secrets:
            name = deployment_secrets.NOTIFY
            self._secrets[None] = _readable(
                lambda: deployment_secrets.signing_secrets(self.s, self.cfg, name, self.now)
            )
        return self._secrets[None]


def _readable(decrypt: Callable[[], list[str]]) -> list[str] | SecretUnreadable:
    try:
        return decrypt()
    except SecretUnreadable as exc:
        return exc


def _bodies(s: Session, events: list[EventOfJob]) -> dict[int, bytes]:
    """Each event's message, its jobs' parts read together."""
    up_to: dict[uuid.UUID, int] = {}
    for found in events:
        job_id = found.job.id
        up_to[job_id] = max(up_to.get(job_id, found.event.seq), found.event.seq)
    parts = event_message.parts_of_jobs(s, up_to)
    return {
        found.event.id: payload.body_of(found, parts.up_to(found.job.id, found.event.seq)) for found in events
    }
