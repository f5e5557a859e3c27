"""Re-apply one stored delivery on an operator's request (`falbridge deliveries reapply`,
`POST /api/deliveries/<id>/reapply`): through apply_delivery, the one path every delivery
takes, so nothing here decides what a callback does to its job.

A delivery already processed (by a worker, the sweeper, an earlier re-apply, or refused
at the door) is left alone and reported `already_processed`. Two re-applies of the same
unprocessed delivery at once: apply_delivery locks its row (FOR UPDATE; SQLite's BEGIN
IMMEDIATE serialises writers), so one applies it and the other finds it processed.
"""

from __future__ import annotations

from dataclasses import dataclass

from falbridge.models.db import transaction
from falbridge.models.deliveries import get_delivery
from falbridge.worker.apply.delivery import DeliveryOutcome, apply_delivery
from falbridge.worker.followup import FollowUp

ALREADY_PROCESSED = "already_processed"


@dataclass(frozen=True)
class Reapplied:
    # `already_processed`, or what applying it did (a DeliveryOutcome's value, as stored).
    outcome: str
    follow_ups: tuple[FollowUp, ...] = ()

    @property
    def changed_nothing(self) -> bool:
        return self.outcome == ALREADY_PROCESSED


def reapply(delivery_id: int) -> Reapplied | None:
    """Apply the delivery unless it was processed already; None when there is no such
    delivery. The follow-ups (a result to fetch) are the caller's to run or enqueue."""
    with transaction() as s:
        delivery = get_delivery(s, delivery_id)
        if delivery is None:
            return None
        processed = delivery.processed_at is not None
    if processed:
        return Reapplied(ALREADY_PROCESSED)
    applied = apply_delivery(delivery_id)
    if applied.outcome is DeliveryOutcome.SKIPPED:
        # Processed between our look and apply_delivery's lock: someone else applied it.
        return Reapplied(ALREADY_PROCESSED)
    return Reapplied(applied.outcome.value, applied.follow_ups)
