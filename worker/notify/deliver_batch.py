"""Delivering the events one commit made, in waves: each wave's deliveries claimed and
their messages read in one transaction (and a fixed number of statements:
falbridge.worker.notify.prepare), sent side by side, and their attempts recorded in one
transaction (a settling UPDATE each, the attempts' rows in one INSERT, the successes'
subscriptions in one UPDATE); two transactions a wave instead of two a delivery.

A wave is as many deliveries as are sent at once (falbridge.worker.side_by_side.PARALLEL),
so each claim's lease covers one attempt, as a delivery's own task's does
(falbridge.worker.notify.deliver). When recording a wave fails, its attempts are recorded
one at a time, so one bad row does not leave the others to be sent again.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from falbridge import config
from falbridge.config import Config, NotifyConfig
from falbridge.models.db import transaction
from falbridge.worker import side_by_side
from falbridge.worker.notify.deliver import (
    Delivered,
    Outcome,
    Sent,
    observed,
    record_all_in,
    record_in,
    send_prepared,
)
from falbridge.worker.notify.prepare import claim_and_prepare_all

log = logging.getLogger(__name__)


def deliver_all(delivery_ids: Sequence[int], cfg: Config | None = None) -> list[tuple[int, Delivered | None]]:
    """One attempt of each delivery that is due, in order; None where it raised (its lease
    expires and the sweeper sends it again)."""
    cfg = cfg or config.current()
    done: list[tuple[int, Delivered | None]] = []
    for wave in side_by_side.chunks(delivery_ids, side_by_side.PARALLEL):
        done.extend(_wave(wave, cfg))
    return done


def _wave(delivery_ids: list[int], cfg: Config) -> list[tuple[int, Delivered | None]]:
    with transaction() as s:
        claimed = claim_and_prepare_all(s, delivery_ids, cfg)
    to_send = [prepared for _, prepared in claimed if prepared is not None]
    sent = [done for _, done in side_by_side.run_each(to_send, lambda p: send_prepared(p, cfg))]
    made = [attempt for attempt in sent if attempt is not None]
    recorded = _record_all(made, cfg.notify)
    for attempt in made:
        done = recorded.get(attempt.claimed.delivery_id)
        if done is not None:
            observed(attempt, done)
    return [
        (i, Delivered(Outcome.NOT_DUE) if prepared is None else recorded.get(i)) for i, prepared in claimed
    ]


def _record_all(sent: list[Sent], notify: NotifyConfig) -> dict[int, Delivered]:
    try:
        with transaction() as s:
            return record_all_in(s, sent, notify)
    except Exception as exc:
        log.warning("deliver: recording a wave of %d failed (%s); one at a time", len(sent), exc)
    recorded: dict[int, Delivered] = {}
    for attempt in sent:
        try:
            with transaction() as s:
                recorded[attempt.claimed.delivery_id] = record_in(s, attempt, notify)
        except Exception as exc:
            log.error("deliver: delivery %s not recorded (%s)", attempt.claimed.delivery_id, exc)
    return recorded
