"""Flow control: how many jobs may be at fal at once, and how fast they may go out.

Checked inside the transaction that claims jobs (worker.claim), so a job is only ever
leased within the caps. Jobs in flight are the submitted, in_progress and outcome_unknown
ones, and the pending ones under a submit lease (a worker may be sending them right now;
an expired lease means one may have reached fal). The caps (FALBRIDGE_MAX_IN_FLIGHT and
FALBRIDGE_MAX_IN_FLIGHT_PER_ENDPOINT) hold across every worker because claimers take one
lock first: a transaction-scoped advisory lock on PostgreSQL (released by the commit that
makes the leases visible, so the next claimer counts them), and on SQLite the write lock
every transaction takes at BEGIN IMMEDIATE. The lock is taken only while flow control is
on; without it, claims run side by side (SKIP LOCKED).

The submit rate limit (FALBRIDGE_SUBMIT_RATE) is a token bucket in one database row,
refilled and spent by the same claim transaction: tokens spent on a claim that rolls back
are given back with it, every worker shares the bucket, and SQLite behaves the same.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import ColumnElement, and_, func, or_, select, text
from sqlalchemy.orm import Session

from falbridge.config import FlowConfig
from falbridge.models.db import insert_unless_taken
from falbridge.models.states import JobStatus
from falbridge.models.tables import Job, SubmitTokens

# Any constant will do, as long as nothing else in the database uses it.
CLAIM_LOCK_KEY = 0x66616C62  # "falb"
BUCKET = "submit"
SENT = (JobStatus.SUBMITTED.value, JobStatus.IN_PROGRESS.value, JobStatus.OUTCOME_UNKNOWN.value)
# A job that leaves these frees a slot.
IN_FLIGHT = frozenset({JobStatus.PENDING.value, *SENT})


def serialise_claims(s: Session, settings: FlowConfig) -> None:
    """Make this transaction the only one claiming until it ends, when flow control is on."""
    if settings.active() and s.get_bind().dialect.name == "postgresql":
        s.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": CLAIM_LOCK_KEY})


def in_flight_filter() -> ColumnElement[bool]:
    """The jobs that hold a slot (see the module's docstring)."""
    return or_(
        Job.status.in_(SENT),
        and_(Job.status == JobStatus.PENDING.value, Job.submit_lease_until.is_not(None)),
    )


def in_flight(s: Session) -> dict[str, int]:
    """Jobs in flight, by endpoint."""
    rows = s.execute(
        select(Job.endpoint_id, func.count()).where(in_flight_filter()).group_by(Job.endpoint_id)
    ).all()
    return {endpoint: int(count) for endpoint, count in rows}


@dataclass
class Room:
    """Slots left under the caps; None: no global cap. Endpoints without a cap of their
    own are bound by the global one only."""

    total: int | None
    endpoints: dict[str, int] = field(default_factory=dict)

    def full_endpoints(self) -> list[str]:
        return [endpoint for endpoint, left in self.endpoints.items() if left <= 0]

    def exhausted(self) -> bool:
        return self.total is not None and self.total <= 0

    def take(self, endpoint_id: str) -> bool:
        """One slot for a job of this endpoint, if there is one."""
        if self.exhausted() or self.endpoints.get(endpoint_id, 1) <= 0:
            return False
        if self.total is not None:
            self.total -= 1
        if endpoint_id in self.endpoints:
            self.endpoints[endpoint_id] -= 1
        return True


def room(s: Session, settings: FlowConfig) -> Room:
    """What the caps leave now (unbounded when none is set: nothing is counted)."""
    if not settings.capped():
        return Room(None)
    counts = in_flight(s)
    total = settings.max_in_flight - sum(counts.values()) if settings.max_in_flight else None
    caps = settings.endpoint_caps()
    return Room(total, {endpoint: cap - counts.get(endpoint, 0) for endpoint, cap in caps.items()})


@dataclass(frozen=True)
class Tokens:
    granted: int
    wait_s: float | None = None  # when short: how long until the next token


def take_tokens(s: Session, wanted: int, settings: FlowConfig, now: datetime) -> Tokens:
    """Up to `wanted` whole tokens from the shared bucket (all of them when no rate is set)."""
    if settings.rate_per_s <= 0 or wanted <= 0:
        return Tokens(wanted)
    size = settings.bucket_size()
    bucket = _locked_bucket(s, size, now)
    elapsed = max(0.0, (now - bucket.refilled_at).total_seconds())
    tokens = min(size, bucket.tokens + elapsed * settings.rate_per_s)
    granted = min(wanted, math.floor(tokens))
    bucket.tokens, bucket.refilled_at = tokens - granted, now
    if granted == wanted:
        return Tokens(granted)
    return Tokens(granted, (1.0 - (bucket.tokens % 1.0)) / settings.rate_per_s)


def _locked_bucket(s: Session, size: float, now: datetime) -> SubmitTokens:
    stmt = select(SubmitTokens).where(SubmitTokens.name == BUCKET).with_for_update()
    bucket = s.scalar(stmt)
    if bucket is None:  # the first claim ever with a rate set: a full bucket
        dialect = s.get_bind().dialect.name
        insert = insert_unless_taken(dialect, SubmitTokens, SubmitTokens.__table__.c.name)
        s.execute(insert.values(name=BUCKET, tokens=size, refilled_at=now))
        bucket = s.scalars(stmt).one()
    return bucket


def admitted(jobs: Sequence[Job], slots: Room) -> list[Job]:
    """The jobs, in order, that fit in the room left (each one taking its slot)."""
    return [job for job in jobs if slots.take(job.endpoint_id)]
