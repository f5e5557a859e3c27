"""The inbox's values, as the Python API and `falbridge.Client` hand them back: fal's stored
callbacks ("deliveries"), field for field the JSON of `GET /api/deliveries[/<id>]` and
`POST /api/deliveries/<id>/reapply` (`to_json()` is that JSON). Immutable, like the job
values in falbridge.values, and built from that JSON in process and over HTTP alike."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import datetime
from typing import Any, ClassVar

from falbridge.values import _Value

ALREADY_PROCESSED = "already_processed"


@dataclasses.dataclass(frozen=True, repr=False)
class DeliverySummary(_Value):
    """A stored callback as listings show it: everything but its body.

    `processed` is False while it waits to be applied; `outcome` says what applying it did
    (applied, duplicate, result_fetch_needed, unknown_job, request_id_mismatch,
    unparseable) or `rejected` for one refused at the door (`verified` False)."""

    _times: ClassVar[frozenset[str]] = frozenset({"received_at", "processed_at"})

    id: int
    request_id: str | None
    job_id: str | None
    received_at: datetime
    verified: bool
    rejected_as: str | None
    redeliveries: int
    body_length: int | None
    processed: bool
    processed_at: datetime | None
    outcome: str | None
    processing_error: str | None

    def __repr__(self) -> str:
        state = self.outcome or ("processed" if self.processed else "unprocessed")
        return f"<{type(self).__name__} {self.id} {self.request_id} {state}>"


@dataclasses.dataclass(frozen=True, repr=False)
class Delivery(DeliverySummary):
    """A stored callback, whole: `GET /api/deliveries/<id>` field for field. `body` is the
    body as JSON when it is JSON (then `body_text` is None), else None and `body_text` the
    text; `payload_status` is the callback's own status (fal's OK or ERROR)."""

    rejection_reason: str | None
    body_sha256: str | None
    payload_status: str | None
    body: Any
    body_text: str | None


@dataclasses.dataclass(frozen=True)
class DeliveryPage:
    """One page of the inbox, newest first; pass `next_cursor` back for the next (None: the last)."""

    deliveries: tuple[DeliverySummary, ...]
    next_cursor: str | None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> DeliveryPage:
        return cls(tuple(DeliverySummary.from_json(d) for d in data["deliveries"]), data["next_cursor"])

    def to_json(self) -> dict[str, Any]:
        return {"deliveries": [d.to_json() for d in self.deliveries], "next_cursor": self.next_cursor}


@dataclasses.dataclass(frozen=True)
class Reapplied:
    """What re-applying a delivery did: `already_processed` (nothing changed), or what
    applying it did (as `Delivery.outcome` now says); and the delivery after it."""

    outcome: str
    delivery: Delivery

    @property
    def already_processed(self) -> bool:
        return self.outcome == ALREADY_PROCESSED

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Reapplied:
        return cls(data["outcome"], Delivery.from_json(data["delivery"]))

    def to_json(self) -> dict[str, Any]:
        return {"outcome": self.outcome, "delivery": self.delivery.to_json()}
