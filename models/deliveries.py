"""The inbox, read back: stored fal callbacks listed newest first (keyset-paginated on id)
and shown one by one, as the JSON shapes the HTTP API returns.

A listing never loads a body (a callback can be megabytes) nor the stored headers; the
detail shows the body, but never the headers: they hold fal's signature and the token of
the webhook URL we made, which nobody reading the inbox needs.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Row, Select, func, select
from sqlalchemy.orm import Session

from falbridge import strict_json
from falbridge.models.serialize import iso
from falbridge.models.tables import WebhookDelivery

MAX_PAGE = 500
# webhook_deliveries.id is a BIGINT: an id past this cannot exist (and PostgreSQL would
# refuse to compare with it).
MAX_DELIVERY_ID = 2**63 - 1
# A body nested deeper is shown as text: a JSON encoder recurses too.
BODY_DEPTH_SHOWN = 200
# Every value webhook_deliveries.outcome takes: worker.apply.delivery.DeliveryOutcome's
# (but `skipped`, which is never stored), and `rejected` (models.inbox.store_rejected).
OUTCOMES = (
    "applied",
    "duplicate",
    "result_fetch_needed",
    "unknown_job",
    "request_id_mismatch",
    "unparseable",
    "rejected",
)


@dataclass(frozen=True)
class DeliveryFilters:
    request_id: str | None = None
    job_id: uuid.UUID | None = None
    processed: bool | None = None
    outcome: str | None = None


class CursorError(ValueError):
    pass


def encode_cursor(delivery_id: int) -> str:
    return base64.urlsafe_b64encode(json.dumps(["d", delivery_id]).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        kind, last_id = json.loads(raw)
    except (ValueError, TypeError, binascii.Error, RecursionError) as exc:
        raise CursorError("cursor is not one this API issued") from exc
    if kind != "d" or type(last_id) is not int or not 1 <= last_id <= MAX_DELIVERY_ID:
        raise CursorError("cursor is not one this API issued")
    return last_id


# Typed loosely: mypy's view of a select() of this many columns fits no Select[Any].
SUMMARY_COLUMNS: tuple[Any, ...] = (
    WebhookDelivery.id,
    WebhookDelivery.request_id,
    WebhookDelivery.job_id,
    WebhookDelivery.received_at,
    WebhookDelivery.verified,
    WebhookDelivery.rejected_as,
    WebhookDelivery.redeliveries,
    WebhookDelivery.body_length,
    WebhookDelivery.processed_at,
    WebhookDelivery.outcome,
    WebhookDelivery.processing_error,
)


def list_deliveries(
    session: Session, filters: DeliveryFilters, *, limit: int = 50, cursor: str | None = None
) -> tuple[list[Row[Any]], str | None]:
    """Newest first (by id, the order they were stored), `limit` rows of SUMMARY_COLUMNS
    and the cursor of the next page (None on the last). CursorError for a foreign cursor."""
    if not 1 <= limit <= MAX_PAGE:
        raise ValueError(f"limit must be between 1 and {MAX_PAGE}")
    stmt: Select[Any] = select(*SUMMARY_COLUMNS)
    if filters.request_id is not None:
        stmt = stmt.where(WebhookDelivery.request_id == filters.request_id)
    if filters.job_id is not None:
        stmt = stmt.where(WebhookDelivery.job_id == filters.job_id)
    if filters.processed is not None:
        processed_at = WebhookDelivery.processed_at
        stmt = stmt.where(processed_at.is_not(None) if filters.processed else processed_at.is_(None))
    if filters.outcome is not None:
        stmt = stmt.where(WebhookDelivery.outcome == filters.outcome)
    if cursor:
        stmt = stmt.where(WebhookDelivery.id < decode_cursor(cursor))
    rows = list(session.execute(stmt.order_by(WebhookDelivery.id.desc()).limit(limit + 1)))
    next_cursor = encode_cursor(rows[limit - 1].id) if len(rows) > limit else None
    return rows[:limit], next_cursor


def rejections_by_reason(session: Session) -> dict[str, int]:
    """How many rejected callbacks are kept, by their short code (`rejected_as`), most first.
    Rejected ones are deleted after their retention, so these are the recent ones."""
    stmt = (
        select(WebhookDelivery.rejected_as, func.count())
        .where(WebhookDelivery.verified.is_(False))
        .group_by(WebhookDelivery.rejected_as)
    )
    counted = [(str(row[0] or "unknown"), int(row[1])) for row in session.execute(stmt)]
    return dict(sorted(counted, key=lambda pair: (-pair[1], pair[0])))


def get_delivery(session: Session, delivery_id: int) -> WebhookDelivery | None:
    if not 1 <= delivery_id <= MAX_DELIVERY_ID:
        return None
    return session.get(WebhookDelivery, delivery_id)


def delivery_summary(row: WebhookDelivery | Row[Any]) -> dict[str, Any]:
    """What a listing shows: everything but the body (and never the stored headers)."""
    return {
        "id": row.id,
        "request_id": row.request_id,
        "job_id": str(row.job_id) if row.job_id is not None else None,
        "received_at": iso(row.received_at),
        "verified": bool(row.verified),
        "rejected_as": row.rejected_as,
        "redeliveries": row.redeliveries,
        "body_length": row.body_length,
        "processed": row.processed_at is not None,
        "processed_at": iso(row.processed_at),
        "outcome": row.outcome,
        "processing_error": row.processing_error,
    }


def delivery_detail(delivery: WebhookDelivery) -> dict[str, Any]:
    """The summary, with the body: as JSON when it is strict JSON (`body_text` null), else
    as text (`body` null; bytes that are not UTF-8 replaced). `payload_status` is the
    callback's own `status` (OK or ERROR) when the body has one."""
    body: Any = None
    body_text: str | None = None
    try:
        body = strict_json.loads(delivery.body, max_depth=BODY_DEPTH_SHOWN)
    except strict_json.JSONRejected:
        body_text = delivery.body.decode("utf-8", "replace")
    status = body.get("status") if isinstance(body, dict) else None
    return {
        **delivery_summary(delivery),
        "rejection_reason": delivery.rejection_reason,
        "body_sha256": delivery.body_sha256,
        "payload_status": status if isinstance(status, str) else None,
        "body": body,
        "body_text": body_text,
    }
