"""Tables: jobs, their result files and history, the webhook inbox, and the outgoing side
(subscriptions, one delivery per event and subscription, every attempt)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    Uuid,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from falbridge.models.states import ALL_STATUSES, JobStatus


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC everywhere; SQLite hands back naive values, so re-attach UTC."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime; use timezone-aware UTC")
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


JSONType = JSON().with_variant(JSONB(), "postgresql")
# SQLite only auto-increments INTEGER PRIMARY KEY, not BIGINT.
BigId = BigInteger().with_variant(Integer(), "sqlite")

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Job(Base):
    __tablename__ = "jobs"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    endpoint_id: Mapped[str] = mapped_column(String(255))
    input: Mapped[dict[str, Any]] = mapped_column(JSONType)
    status: Mapped[str] = mapped_column(String(32), default=JobStatus.PENDING.value)
    external_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    meta: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSONType)
    # Told of the job's terminal event once, through the outbox: a URL of the user's
    # (signed with the deployment's notify secret) and a Celery task name (on a queue).
    notify_url: Mapped[str | None] = mapped_column(Text)
    on_complete: Mapped[str | None] = mapped_column(String(255))
    on_complete_queue: Mapped[str | None] = mapped_column(String(255))
    # fal's submit options for this job (worker.fal.job_options), sent as headers on every
    # submit; priority also has a column of its own, so that claims can order by it.
    options: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    priority: Mapped[str] = mapped_column(String(8), default="normal", server_default=text("'normal'"))

    request_id: Mapped[str | None] = mapped_column(String(128), unique=True)
    gateway_request_id: Mapped[str | None] = mapped_column(String(128))
    status_url: Mapped[str | None] = mapped_column(Text)
    response_url: Mapped[str | None] = mapped_column(Text)
    cancel_url: Mapped[str | None] = mapped_column(Text)

    result: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    # payload:null + payload_error: the result must be fetched from the queue.
    result_pending: Mapped[bool] = mapped_column(Boolean, default=False)
    error: Mapped[str | None] = mapped_column(Text)
    error_type: Mapped[str | None] = mapped_column(String(64))
    error_detail: Mapped[Any | None] = mapped_column(JSONType)

    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # The changes feed's order: stamped from the database's clock (models.clock) when the
    # status, result, error or files change, and only then (models.jobs.transition).
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # The sweeper's: anything done to the job (a change, a lease, a re-drive) restarts its
    # grace periods; poll bookkeeping leaves it alone (it measures fal's silence).
    touched_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    submitted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cancel_requested_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Set while a worker has claimed the job and is talking to fal; an expired lease on a
    # pending job means a worker died mid-submit, so the outcome is unknown.
    submit_lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # A pending job whose submit fal refused for now (429, 503, unreachable) waits until
    # then: no claim takes it earlier (worker.claim), whatever wakes the submitter.
    submit_retry_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The reconciler's bookkeeping: when it last asked fal about this job, and when it
    # resubmitted a job whose first submit outcome stayed unknown (at most once).
    last_polled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    resubmitted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Set by `falbridge purge --compact` (models.purge): input and result dropped (the input
    # left as {}), files and the inbox's copies deleted; status, times and error kept.
    compacted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    submit_attempts: Mapped[int] = mapped_column(Integer, default=0)
    poll_attempts: Mapped[int] = mapped_column(Integer, default=0)
    webhook_count: Mapped[int] = mapped_column(Integer, default=0)
    # The sequence of the job's last status event (models.jobs.transition raises it in the
    # UPDATE that changes the status, so each event's `seq` is unique per job).
    # A server default too: rows inserted by hand (bench/, a user's script) start at 0.
    event_seq: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))

    files: Mapped[list[ResultFile]] = relationship(
        back_populates="job", order_by="ResultFile.id", cascade="all, delete-orphan"
    )
    events: Mapped[list[JobEvent]] = relationship(
        back_populates="job", order_by="JobEvent.id", cascade="all, delete-orphan"
    )
    stored_files: Mapped[list[StoredFile]] = relationship(
        back_populates="job", order_by="StoredFile.id", cascade="all, delete-orphan"
    )

    __table_args__ = (
        CheckConstraint("status IN (" + ", ".join(f"'{s}'" for s in ALL_STATUSES) + ")", name="status"),
        # Keyset pagination walks (created_at, id) newest first, alone or under a filter.
        Index("ix_jobs_created_at_id", "created_at", "id"),
        Index("ix_jobs_status_created_at_id", "status", "created_at", "id"),
        Index("ix_jobs_endpoint_id_created_at_id", "endpoint_id", "created_at", "id"),
        # The sweeper scans non-terminal jobs by status and age.
        Index("ix_jobs_status_touched_at", "status", "touched_at"),
        # Flow control counts the pending jobs a worker holds a lease on (worker.flow).
        Index("ix_jobs_status_submit_lease_until", "status", "submit_lease_until"),
        # The changes feed walks (updated_at, id) oldest first.
        Index("ix_jobs_updated_at_id", "updated_at", "id"),
        # metadata[<key>]=<value> filters are containment (@>) on PostgreSQL.
        Index(
            "ix_jobs_metadata",
            "metadata",
            postgresql_using="gin",
            postgresql_ops={"metadata": "jsonb_path_ops"},
        ).ddl_if(dialect="postgresql"),
    )

    @property
    def job_status(self) -> JobStatus:
        return JobStatus(self.status)


class SubmitTokens(Base):
    """The submit rate limit's token bucket (FALBRIDGE_SUBMIT_RATE), shared by every worker:
    one row, locked and refilled by the transaction that claims jobs (worker.flow)."""

    __tablename__ = "submit_tokens"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    tokens: Mapped[float] = mapped_column(Float)
    refilled_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ResultFile(Base):
    """One fal File object found in a job's result; `path` says where (e.g. `image`)."""

    __tablename__ = "result_files"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    path: Mapped[str] = mapped_column(String(512))
    url: Mapped[str] = mapped_column(Text)
    content_type: Mapped[str | None] = mapped_column(String(255))
    file_name: Mapped[str | None] = mapped_column(String(512))
    file_size: Mapped[int | None] = mapped_column(BigInteger)
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)

    job: Mapped[Job] = relationship(back_populates="files")

    __table_args__ = (UniqueConstraint("job_id", "path"),)


STORED_FILE_STATUSES = ("stored", "missing")


class StoredFile(Base):
    """falbridge's own copy of one result file (falbridge.worker.storage), or why there is
    none: `missing` with the `reason` (fal no longer had it, over the size limit, the
    backend stayed down). One row per (job, path), written once, when the file's outcome
    is final; `attempts` is how many tries it took."""

    __tablename__ = "stored_files"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    path: Mapped[str] = mapped_column(String(512))
    fal_url: Mapped[str] = mapped_column(Text)
    file_name: Mapped[str | None] = mapped_column(String(512))
    status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=1)
    # The Content-Type fal's CDN sent, and what the bytes are (the one served).
    served_type: Mapped[str | None] = mapped_column(String(255))
    sniffed_type: Mapped[str | None] = mapped_column(String(255))
    sha256: Mapped[str | None] = mapped_column(String(64))
    size: Mapped[int | None] = mapped_column(BigInteger)
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    storage_key: Mapped[str | None] = mapped_column(Text)
    stored_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    job: Mapped[Job] = relationship(back_populates="stored_files")

    __table_args__ = (
        UniqueConstraint("job_id", "path"),
        CheckConstraint(
            "status IN (" + ", ".join(f"'{s}'" for s in STORED_FILE_STATUSES) + ")", name="status"
        ),
    )


class InputUpload(Base):
    """One input file uploaded to fal storage through falbridge (POST /api/files, or a
    file handed to Python or the CLI): a job whose input names this URL records the digest.
    `storage_key` is set once falbridge's own copy is kept (content-addressed, so uploads
    of the same bytes share it). While a row names a digest, its copy is not purged."""

    __tablename__ = "input_uploads"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    url: Mapped[str] = mapped_column(Text, unique=True)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    size: Mapped[int] = mapped_column(BigInteger)
    content_type: Mapped[str] = mapped_column(String(255))
    storage_key: Mapped[str | None] = mapped_column(Text)
    uploaded_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


class JobInput(Base):
    """A job's reference to an input file's copy, by digest: the purge deletes a copy
    only when no job (and no upload record) names its digest any more."""

    __tablename__ = "job_inputs"

    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), primary_key=True, index=True)
    size: Mapped[int] = mapped_column(BigInteger)


class JobEvent(Base):
    """One status transition: the history view, and the outbox of outgoing webhooks (an
    event is written in the transaction of its transition, whether or not anyone
    subscribes, so a subscription made later can replay it). `seq` orders a job's events."""

    __tablename__ = "job_events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    seq: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    source: Mapped[str] = mapped_column(String(16))
    from_status: Mapped[str | None] = mapped_column(String(32))
    to_status: Mapped[str] = mapped_column(String(32))
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSONType)

    job: Mapped[Job] = relationship(back_populates="events")

    __table_args__ = (
        UniqueConstraint("job_id", "seq"),
        # Replaying a subscription's events since a time walks them by time.
        Index("ix_job_events_at", "at"),
    )


class WebhookDelivery(Base):
    """The inbox: every callback we received, stored before we answer.

    A verified delivery is kept whole. A rejected one is evidence, not storage: its kept
    headers, the body's sha256 and length, and only its first 4 KiB in `body` (nothing,
    when it was refused before its body was read); `rejected_as` is a short code to count
    rejections by, and the sweeper deletes them after FALBRIDGE_REJECTED_RETENTION_S.

    `dedupe_key` (sha256 of request id and raw body) is set only for verified deliveries;
    its unique index turns a re-delivery of the same callback into one row whose
    `redeliveries` counter goes up, so it can never be applied twice.
    """

    __tablename__ = "webhook_deliveries"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    request_id: Mapped[str | None] = mapped_column(String(128), index=True)
    job_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"), index=True)
    body: Mapped[bytes] = mapped_column(LargeBinary)
    body_sha256: Mapped[str | None] = mapped_column(String(64))
    body_length: Mapped[int | None] = mapped_column(BigInteger)
    headers: Mapped[dict[str, Any]] = mapped_column(JSONType)
    verified: Mapped[bool] = mapped_column(Boolean, default=False)
    rejected_as: Mapped[str | None] = mapped_column(String(32))
    rejection_reason: Mapped[str | None] = mapped_column(Text)
    dedupe_key: Mapped[str | None] = mapped_column(String(64), unique=True)
    redeliveries: Mapped[int] = mapped_column(Integer, default=0)
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    outcome: Mapped[str | None] = mapped_column(String(32))
    processing_error: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        # The sweeper looks for verified deliveries that were never processed,
        Index("ix_webhook_deliveries_unprocessed", "processed_at", "verified"),
        # and for rejected ones past their retention.
        Index("ix_webhook_deliveries_rejected", "verified", "received_at"),
    )


DELIVERY_STATUSES = ("pending", "in_flight", "delivered", "exhausted")


class Subscription(Base):
    """A user's endpoint for outgoing webhooks. The signing secret is stored encrypted
    (models.secrets); during a rotation the previous one keeps signing until it expires.
    `dedupe_key` (sha256 of the URL and the sorted event types) makes the same URL with the
    same events twice a conflict."""

    __tablename__ = "subscriptions"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    url: Mapped[str] = mapped_column(Text)
    events: Mapped[list[str]] = mapped_column(JSONType)
    description: Mapped[str | None] = mapped_column(Text)
    dedupe_key: Mapped[str] = mapped_column(String(64), unique=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    disabled_reason: Mapped[str | None] = mapped_column(Text)
    secret_encrypted: Mapped[bytes] = mapped_column(LargeBinary)
    previous_secret_encrypted: Mapped[bytes | None] = mapped_column(LargeBinary)
    previous_secret_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # When the current run of failed attempts began; cleared by a success.
    failing_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class EventDelivery(Base):
    """One event to one subscription: at most one row per pair. `next_attempt_at` is when
    it is due (the retry schedule lives here, not in the broker); a worker claims it by
    moving it to in_flight with a lease, so no two deliver it at once. `redrive_after`
    keeps the sweeper from enqueueing it again while its task waits in the queue."""

    __tablename__ = "event_deliveries"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("job_events.id", ondelete="CASCADE"))
    # None for the job's own callbacks, which `target` names (its notify_url, its
    # on_complete task); "subscription" otherwise.
    subscription_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("subscriptions.id", ondelete="CASCADE"), index=True
    )
    target: Mapped[str] = mapped_column(String(16), default="subscription", server_default="subscription")
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    redrive_after: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    event: Mapped[JobEvent] = relationship()

    __table_args__ = (
        UniqueConstraint("event_id", "subscription_id"),
        # A NULL subscription is never equal to another: the job's own callbacks are
        # unique per event by their target.
        Index(
            "ux_event_deliveries_job_target",
            "event_id",
            "target",
            unique=True,
            sqlite_where=text("subscription_id IS NULL"),
            postgresql_where=text("subscription_id IS NULL"),
        ),
        CheckConstraint("target IN ('subscription', 'notify_url', 'on_complete')", name="target"),
        CheckConstraint("status IN (" + ", ".join(f"'{s}'" for s in DELIVERY_STATUSES) + ")", name="status"),
        # The sweeper looks for deliveries due, the dead-letter view for exhausted ones.
        Index("ix_event_deliveries_status_next_attempt_at", "status", "next_attempt_at"),
    )


class DeliveryAttempt(Base):
    """One HTTP attempt of a delivery: when, the answer's status and first bytes, how long
    it took, or the error that stopped it."""

    __tablename__ = "delivery_attempts"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    delivery_id: Mapped[int] = mapped_column(
        ForeignKey("event_deliveries.id", ondelete="CASCADE"), index=True
    )
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    status_code: Mapped[int | None] = mapped_column(Integer)
    latency_ms: Mapped[int] = mapped_column(Integer)
    response_head: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)


class DeploymentSecret(Base):
    """A signing secret of the deployment's own, by name: "notify" signs every job's
    notify_url callback. Stored encrypted like a subscription's (models.secrets, the
    name as associated data); rotated with the same overlap."""

    __tablename__ = "deployment_secrets"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    secret_encrypted: Mapped[bytes] = mapped_column(LargeBinary)
    previous_secret_encrypted: Mapped[bytes | None] = mapped_column(LargeBinary)
    previous_secret_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    rotated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
