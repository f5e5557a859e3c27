"""Waking the inbox drain (the `drain_inbox` task) after a delivery's commit, at most one
drain waiting in the queue at a time (worker/wake_flag.py).

A receiver that has committed a delivery publishes a drain only if it sets the flag; a
drain clears it before its first claim. So every stored delivery is followed by a drain
that starts after its commit: either this receiver's, or the one whose flag it found,
which has not claimed yet. The flag lives WAKE_TTL_S: a drain lost after its publish holds
back the next wake-ups only that long, and the sweeper re-drives whatever was stored and
never applied.
"""

from __future__ import annotations

import logging

import redis

from falbridge.worker.wake_flag import WakeFlag

log = logging.getLogger(__name__)

# Long enough to spare a flood of deliveries all but one publish per drain, short enough
# that a lost drain delays the next wake-up by no more than this.
WAKE_TTL_S = 2.0
FLAG = WakeFlag("falbridge:inbox-drain-pending", WAKE_TTL_S)


def claim_wake() -> bool:
    """True when the caller should publish a drain: no published drain is waiting to
    start. When Redis can't say, True: the publish that follows then fails fast, logged."""
    try:
        return FLAG.claim()
    except redis.RedisError as exc:
        log.debug("drain wake-up flag unavailable: %s", exc)
        return True


def release_wake() -> None:
    """A drain is starting (or a publish failed): the next delivery must wake another."""
    try:
        FLAG.release()
    except redis.RedisError as exc:
        # The flag expires within WAKE_TTL_S anyway.
        log.debug("could not clear the drain wake-up flag: %s", exc)
