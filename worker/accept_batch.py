"""Accept many jobs at once (POST /api/jobs/batch, `submit_batch`, `falbridge submit
--batch`): each is checked, and its files uploaded, as `accept` does one; the good ones are
stored together in one transaction; a bad one is refused alone, the others go on.

The answer for a refused job is the one POST /api/jobs would give it (`Refusal`: status,
code, message, details), so that a batch and single submits cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from falbridge.models.db import transaction
from falbridge.models.states import EventSource
from falbridge.worker.accept import (
    Accepted,
    ExternalIdConflict,
    InvalidEndpointId,
    Prepared,
    Stored,
    SubmitItem,
    UploadFailed,
    prepare,
    settle,
    store,
)
from falbridge.worker.fal import InputValidationError
from falbridge.worker.fal.job_options import InvalidOptions
from falbridge.worker.notify.job_callbacks import CallbackRefused

MAX_BATCH = 1000


@dataclass(frozen=True)
class Refusal:
    """Why one job was not accepted: what POST /api/jobs would answer for it."""

    status: int
    code: str
    message: str
    details: Any = None

    def to_json(self) -> dict[str, Any]:
        return {"status": self.status, "code": self.code, "message": self.message, "details": self.details}


def refusal(exc: Exception) -> Refusal:
    """The API's answer for an exception of `accept`; anything else is not a refusal."""
    if isinstance(exc, ExternalIdConflict):
        return Refusal(409, "external_id_conflict", str(exc), {"job_id": str(exc.job.id)})
    if isinstance(exc, CallbackRefused):
        return Refusal(422, "invalid_callback", str(exc), [{"field": exc.field, "message": exc.reason}])
    if isinstance(exc, InvalidOptions):
        return Refusal(422, "invalid_options", str(exc), exc.errors)
    if isinstance(exc, InputValidationError):
        return Refusal(422, "invalid_input", str(exc), exc.errors)
    if isinstance(exc, UploadFailed):
        return Refusal(502, "upload_failed", str(exc))
    if isinstance(exc, InvalidEndpointId):
        return Refusal(422, "invalid_endpoint_id", str(exc), [{"field": "endpoint_id", "message": str(exc)}])
    if isinstance(exc, ValueError):  # a local file of the Python API's input that is not there
        return Refusal(422, "invalid_input", str(exc), [{"field": "input", "message": str(exc)}])
    raise exc


def accept_batch(
    items: Sequence[SubmitItem], *, source: EventSource = EventSource.API
) -> list[Accepted | Refusal]:
    """One result per item, in order. Checks and uploads first (no transaction open while
    fal storage is called), then every good job in one transaction, then the conflicts."""
    if len(items) > MAX_BATCH:
        raise ValueError(f"at most {MAX_BATCH} jobs in a batch (got {len(items)})")
    prepared: list[Prepared | Refusal] = [_prepared(item, source) for item in items]
    good = [i for i, p in enumerate(prepared) if isinstance(p, Prepared)]
    # Inserted in external-id order: two batches naming the same keys in other orders
    # then wait for each other's commit instead of deadlocking (PostgreSQL).
    good.sort(key=lambda i: _insert_order(prepared[i]))
    stored: dict[int, Stored] = {}
    if good:
        with transaction() as s:
            for i in good:
                stored[i] = store(s, _as_prepared(prepared[i]))
    return [_settled(p, stored.get(i)) for i, p in enumerate(prepared)]


def _prepared(item: SubmitItem, source: EventSource) -> Prepared | Refusal:
    try:
        return prepare(item, source=source)
    except (ValueError, UploadFailed) as exc:
        return refusal(exc)


def _insert_order(prepared: Prepared | Refusal) -> tuple[bool, str]:
    key = prepared.external_id if isinstance(prepared, Prepared) else None
    return key is None, key or ""


def _as_prepared(prepared: Prepared | Refusal) -> Prepared:
    assert isinstance(prepared, Prepared)  # only good ones are stored
    return prepared


def _settled(prepared: Prepared | Refusal, stored: Stored | None) -> Accepted | Refusal:
    if isinstance(prepared, Refusal):
        return prepared
    assert stored is not None
    try:
        return settle(prepared, stored)
    except ExternalIdConflict as exc:
        return refusal(exc)
