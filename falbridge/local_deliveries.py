"""The Python API for fal's stored callbacks ("deliveries"), in process:
`falbridge.list_deliveries`, `get_delivery`, `reapply_delivery`. Like falbridge.local,
they need a worker's configuration (the database; the broker, for what re-applying
calls for); `falbridge.Client` has the same three over the HTTP API."""

from __future__ import annotations

import uuid

from falbridge.delivery_values import Delivery, DeliveryPage, DeliverySummary, Reapplied
from falbridge.errors import DeliveryNotFound, InvalidInput
from falbridge.models import deliveries as inbox
from falbridge.models.db import transaction
from falbridge.models.deliveries import (
    MAX_DELIVERY_ID,
    MAX_PAGE,
    OUTCOMES,
    CursorError,
    DeliveryFilters,
    delivery_detail,
    delivery_summary,
)
from falbridge.worker import actions


def list_deliveries(
    *,
    request_id: str | None = None,
    job_id: str | None = None,
    processed: bool | None = None,
    outcome: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> DeliveryPage:
    """A page of stored callbacks, newest first, `limit` (1-500) at a time; pass the page's
    `next_cursor` for the next. `request_id`: fal's; `job_id`: the job (a full id) they
    were applied to; `processed` False: only those still waiting to be applied; `outcome`:
    one of applied, duplicate, result_fetch_needed, unknown_job, request_id_mismatch,
    unparseable, rejected."""
    errors: list[dict[str, str]] = []
    job_uuid = None
    if job_id is not None:
        try:
            job_uuid = uuid.UUID(str(job_id))
        except ValueError:
            errors.append({"field": "job_id", "message": "must be a full job id (a UUID)"})
    if not 1 <= limit <= MAX_PAGE:
        errors.append({"field": "limit", "message": f"must be an integer from 1 to {MAX_PAGE}"})
    if outcome is not None and outcome not in OUTCOMES:
        errors.append({"field": "outcome", "message": f"must be one of {', '.join(OUTCOMES)}"})
    if errors:
        raise InvalidInput("; ".join(f"{e['field']}: {e['message']}" for e in errors), errors)
    filters = DeliveryFilters(request_id=request_id, job_id=job_uuid, processed=processed, outcome=outcome)
    with transaction() as s:
        try:
            rows, next_cursor = inbox.list_deliveries(s, filters, limit=limit, cursor=cursor)
        except CursorError:
            raise InvalidInput(
                "cursor is not one a listing returned",
                [{"field": "cursor", "message": "not a cursor from a previous page"}],
            ) from None
        return DeliveryPage(tuple(DeliverySummary.from_json(delivery_summary(r)) for r in rows), next_cursor)


def get_delivery(delivery_id: int) -> Delivery:
    """One stored callback with its body. DeliveryNotFound."""
    number = _checked(delivery_id)
    with transaction() as s:
        delivery = inbox.get_delivery(s, number)
        if delivery is None:
            raise DeliveryNotFound(number)
        return Delivery.from_json(delivery_detail(delivery))


def reapply_delivery(delivery_id: int) -> Reapplied:
    """Apply a stored callback now, as a worker would, unless it was processed already: then
    nothing changes and the outcome is `already_processed`. Of several re-applies of the
    same delivery at once, exactly one applies it. DeliveryNotFound."""
    number = _checked(delivery_id)
    reapplied = actions.reapply_delivery(number)
    if reapplied is None:
        raise DeliveryNotFound(number)
    return Reapplied(reapplied.outcome, get_delivery(number))


def _checked(delivery_id: int) -> int:
    if isinstance(delivery_id, bool) or not isinstance(delivery_id, int):
        message = f"a delivery id is an integer, not {type(delivery_id).__name__}"
        raise InvalidInput(message, [{"field": "delivery_id", "message": message}])
    if not 1 <= delivery_id <= MAX_DELIVERY_ID:
        message = f"must be an integer from 1 to {MAX_DELIVERY_ID}"
        raise InvalidInput(f"delivery_id {message}", [{"field": "delivery_id", "message": message}])
    return delivery_id
