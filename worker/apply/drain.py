"""Drain the inbox: apply the stored deliveries not yet applied, oldest first, a batch per
transaction, until the inbox holds none this drainer may take.

A batch is claimed, applied and marked processed in one transaction: one commit for up to
FALBRIDGE_DRAIN_BATCH callbacks instead of one each. Concurrent drainers on PostgreSQL
never take the same row (SKIP LOCKED); on SQLite their transactions take turns. Applying
a delivery twice stays a no-op either way: a processed row is never claimed again.

When a batch fails (a bad row, a deadlock between two drainers' job locks), its
transaction rolls back and each of its deliveries is applied alone; one that still fails
is passed over by this drain and left to the sweeper, which re-drives every unapplied
delivery after FALBRIDGE_DELIVERY_GRACE_S.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field

from falbridge.models import transition_writes
from falbridge.models.db import transaction
from falbridge.models.inbox import claim_unapplied, record_processed
from falbridge.worker.apply.delivery import DeliveryOutcome, apply_batch, apply_delivery
from falbridge.worker.followup import FollowUp

log = logging.getLogger(__name__)


@dataclass
class Drained:
    outcomes: Counter[str] = field(default_factory=Counter)
    follow_ups: list[FollowUp] = field(default_factory=list)
    passed_over: set[int] = field(default_factory=set)
    batches: int = 0
    # True when the drain stopped at its batch budget with deliveries possibly left.
    more: bool = False

    @property
    def applied(self) -> int:
        return sum(self.outcomes.values())


def drain(batch_size: int, max_batches: int) -> Drained:
    """Apply what the inbox holds, `batch_size` per transaction, at most `max_batches`
    transactions (so one task does not run for ever under a steady stream)."""
    drained = Drained()
    while drained.batches < max_batches:
        claimed = _apply_batch(batch_size, drained)
        drained.batches += 1
        if claimed < batch_size:
            return drained
    drained.more = True
    return drained


def _apply_batch(batch_size: int, drained: Drained) -> int:
    """One batch; how many deliveries it claimed."""
    ids: list[int] = []
    try:
        with transaction() as s:
            claimed = claim_unapplied(s, batch_size, drained.passed_over)
            ids = [delivery.id for delivery in claimed]
            with transition_writes.held(s):  # the batch's events: two INSERTs, not two each
                results = apply_batch(s, claimed)
            record_processed(s, [processed for _, processed in results])
    except Exception as exc:  # one bad row must not hold back the batch
        log.warning("drain: a batch of %d failed (%s); applying them one by one", len(ids), exc)
        _apply_one_by_one(ids, drained)
        return len(ids)
    for applied, _ in results:
        drained.outcomes[applied.outcome.value] += 1
        drained.follow_ups.extend(applied.follow_ups)
    return len(ids)


def _apply_one_by_one(ids: list[int], drained: Drained) -> None:
    for delivery_id in ids:
        try:
            applied = apply_delivery(delivery_id)
        except Exception as exc:
            log.error("drain: delivery %s failed (%s); left to the sweeper", delivery_id, exc)
            drained.passed_over.add(delivery_id)
            continue
        if applied.outcome is not DeliveryOutcome.SKIPPED:  # skipped: another drainer had it
            drained.outcomes[applied.outcome.value] += 1
            drained.follow_ups.extend(applied.follow_ups)
