"""The job history, listed: newest first, filtered, keyset-paginated."""

from __future__ import annotations

import base64
import dataclasses
import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, Select, func, or_, select, tuple_
from sqlalchemy.orm import Session

from falbridge.models.metadata_filter import metadata_equals
from falbridge.models.states import ALL_STATUSES
from falbridge.models.tables import Job, ResultFile

MAX_PAGE = 500


@dataclass(frozen=True)
class JobFilters:
    status: str | None = None
    endpoint_id: str | None = None
    external_id: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    # (key, value) pairs, all of which must hold: metadata[key] equals value (a str, int,
    # float, bool or None; a number matches a number, a string a string).
    metadata: tuple[tuple[str, Any], ...] = ()
    # Free text: part of the external id or of fal's request id, either case (the dashboard's
    # search box; a person pastes a fragment, not always the whole id).
    q: str | None = None


class CursorError(ValueError):
    pass


def encode_cursor(job: Job | Row[Any]) -> str:
    raw = json.dumps([job.created_at.isoformat(), str(job.id)]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created, job_id = json.loads(raw)
        at = datetime.fromisoformat(created)
        if at.tzinfo is None:
            raise ValueError("naive")
        return at, uuid.UUID(job_id)
    except (ValueError, TypeError, AttributeError, RecursionError, OverflowError) as exc:
        raise CursorError("cursor is not one this API issued") from exc


# What a listing shows (models.serialize.job_summary): not the input, result or fal's URLs.
# An input can hold megabytes of data URIs; a page of 500 must not load them all.
SUMMARY_COLUMNS = (
    Job.id,
    Job.endpoint_id,
    Job.status,
    Job.external_id,
    Job.meta,
    Job.request_id,
    Job.gateway_request_id,
    Job.result_pending,
    Job.error,
    Job.error_type,
    Job.error_detail,
    Job.created_at,
    Job.updated_at,
    Job.submitted_at,
    Job.completed_at,
    Job.cancel_requested_at,
    Job.last_polled_at,
    Job.resubmitted_at,
    Job.submit_attempts,
    Job.poll_attempts,
    Job.webhook_count,
)


def list_jobs(
    session: Session, filters: JobFilters, *, limit: int = 50, cursor: str | None = None
) -> tuple[list[Row[Any]], str | None]:
    """Newest first, keyset-paginated on (created_at, id) so deep pages cost what the first does.

    Rows of SUMMARY_COLUMNS, read by attribute like a Job (`row.status`, `row.meta`), not
    ORM objects: building 500 of those cost more than the query (bench/ history profile).
    """
    if not 1 <= limit <= MAX_PAGE:
        raise ValueError(f"limit must be between 1 and {MAX_PAGE}")
    stmt = filtered(select(*SUMMARY_COLUMNS), filters, session.get_bind().dialect.name)
    if cursor:
        at, last_id = decode_cursor(cursor)
        stmt = stmt.where(tuple_(Job.created_at, Job.id) < tuple_(at, last_id))
    stmt = stmt.order_by(Job.created_at.desc(), Job.id.desc()).limit(limit + 1)
    rows = list(session.execute(stmt))
    next_cursor = encode_cursor(rows[limit - 1]) if len(rows) > limit else None
    return rows[:limit], next_cursor


def filtered(stmt: Select[Any], filters: JobFilters, dialect: str) -> Select[Any]:
    """`stmt` narrowed to the jobs `filters` describe (for listings and the feed alike)."""
    if filters.status:
        stmt = stmt.where(Job.status == filters.status)
    if filters.endpoint_id:
        stmt = stmt.where(Job.endpoint_id == filters.endpoint_id)
    if filters.external_id:
        stmt = stmt.where(Job.external_id == filters.external_id)
    if filters.created_after:
        stmt = stmt.where(Job.created_at >= filters.created_after)
    if filters.created_before:
        stmt = stmt.where(Job.created_at < filters.created_before)
    for key, value in filters.metadata:
        stmt = stmt.where(metadata_equals(key, value, dialect))
    if filters.q:
        stmt = stmt.where(
            or_(
                Job.external_id.icontains(filters.q, autoescape=True),
                Job.request_id.icontains(filters.q, autoescape=True),
            )
        )
    return stmt


def status_counts(session: Session, filters: JobFilters) -> dict[str, int]:
    """How many jobs the filters match in each status, every status named (0 when none);
    the filters' own status is left out, so the counts show what choosing another gives."""
    unfiltered = dataclasses.replace(filters, status=None)
    columns: tuple[Any, ...] = (Job.status, func.count())  # loosely typed, as filtered() takes it
    stmt = filtered(select(*columns), unfiltered, session.get_bind().dialect.name)
    found = {row[0]: int(row[1]) for row in session.execute(stmt.group_by(Job.status))}
    return {status: found.get(status, 0) for status in ALL_STATUSES}


def statuses_of(session: Session, job_ids: list[uuid.UUID]) -> list[Row[Any]]:
    """(id, status, updated_at) of each of these jobs that exists."""
    if not job_ids:
        return []
    return list(session.execute(select(Job.id, Job.status, Job.updated_at).where(Job.id.in_(job_ids))))


def file_counts(session: Session, job_ids: list[uuid.UUID]) -> dict[uuid.UUID, int]:
    """How many result files each of these jobs has (jobs with none are left out)."""
    counted = select(ResultFile.job_id, func.count()).where(ResultFile.job_id.in_(job_ids))
    return {row[0]: row[1] for row in session.execute(counted.group_by(ResultFile.job_id))}
