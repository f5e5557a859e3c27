"""The changes feed: jobs in the order they last changed, for a consumer that keeps in sync.

`GET /api/jobs?updated_after=<time>` and `falbridge.list(updated_after=...)`: oldest change
first, keyset-paginated on (updated_at, id) by ix_jobs_updated_at_id. updated_at moves only
with what a consumer sees (status, result, error, files) and comes from the database's
clock (models.clock). A change is only shown once it is older than the settle delay: a
transaction stamps its rows before it commits, so a row stamped earlier than one already
shown could otherwise become visible behind the consumer's cursor and be skipped. Held
back `settle_s`, every commit quicker than that is seen; ours take milliseconds.

The cursor is never None here: it is where the consumer resumes, now or in an hour.
"""

from __future__ import annotations

import base64
import json
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Row, select, tuple_
from sqlalchemy.orm import Session

from falbridge.models.clock import db_now
from falbridge.models.listing import MAX_PAGE, SUMMARY_COLUMNS, CursorError, JobFilters, filtered, list_jobs
from falbridge.models.tables import Job

_KIND = "changes"
_AFTER_EVERY_ID = uuid.UUID(int=(1 << 128) - 1)


def feed_cursor_position(cursor: str) -> datetime:
    """The time a feed cursor resumes after; CursorError for anything else."""
    return _decode(cursor)[0]


def _is_feed(cursor: str) -> bool:
    try:
        _decode(cursor)
    except CursorError:
        return False
    return True


def jobs_page(
    session: Session,
    filters: JobFilters,
    *,
    limit: int = 50,
    cursor: str | None = None,
    updated_after: datetime | None = None,
    settle_s: float = 5.0,
) -> tuple[list[Row[Any]], str | None]:
    """One page of `GET /api/jobs`: of the changes feed when `updated_after` or a feed
    cursor is given, else of the listing, newest first. CursorError for a cursor of the
    other kind than `updated_after` asks for, or of neither."""
    if updated_after is not None or (cursor is not None and _is_feed(cursor)):
        return changed_since(
            session, filters, updated_after=updated_after, cursor=cursor, limit=limit, settle_s=settle_s
        )
    return list_jobs(session, filters, limit=limit, cursor=cursor)


def changed_since(
    session: Session,
    filters: JobFilters,
    *,
    updated_after: datetime | None = None,
    cursor: str | None = None,
    limit: int = 50,
    settle_s: float = 5.0,
) -> tuple[list[Row[Any]], str]:
    """Jobs changed after `updated_after` (or after the cursor's position, which wins),
    oldest change first: summary rows, and the cursor to continue from."""
    if not 1 <= limit <= MAX_PAGE:
        raise ValueError(f"limit must be between 1 and {MAX_PAGE}")
    if cursor is not None:
        at, last_id = _decode(cursor)
    elif updated_after is not None:
        at, last_id = updated_after, _AFTER_EVERY_ID
    else:
        raise ValueError("the feed starts at a time or a cursor")
    stmt = (
        filtered(select(*SUMMARY_COLUMNS), filters, session.get_bind().dialect.name)
        .where(tuple_(Job.updated_at, Job.id) > tuple_(at, last_id), Job.updated_at <= db_now(settle_s))
        .order_by(Job.updated_at, Job.id)
        .limit(limit)
    )
    rows = list(session.execute(stmt))
    if rows:
        at, last_id = rows[-1].updated_at, rows[-1].id
    return rows, _encode(at, last_id)


def _encode(at: datetime, job_id: uuid.UUID) -> str:
    raw = json.dumps([_KIND, at.isoformat(), str(job_id)]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        kind, updated, job_id = json.loads(raw)
        at = datetime.fromisoformat(updated)
        if kind != _KIND or at.tzinfo is None:
            raise ValueError("not a feed cursor")
        return at, uuid.UUID(job_id)
    except (ValueError, TypeError, AttributeError, RecursionError, OverflowError) as exc:
        raise CursorError("cursor is not one the changes feed issued") from exc
