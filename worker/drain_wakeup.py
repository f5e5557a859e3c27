"""The flag that batches wake-ups of the inbox drain: "a drain task is published and has
not started yet", one Redis key shared by every receiver and worker.

A receiver that has committed a delivery sets it (SET NX: one round trip) and publishes a
drain task only if the flag was not set already; a drain task clears it before its first
claim. So every stored delivery is followed by a drain that starts after its commit:
either this receiver's, or the one whose flag it found, which has not claimed yet. The
flag expires on its own (WAKE_TTL_S) so that a task lost after its publish, or a publish
that failed without our noticing, holds back the next wake-ups only that long; the
sweeper re-drives whatever was stored and never applied.
"""

from __future__ import annotations

import logging
import os

import redis

from falbridge.worker.celery_app import ensure_broker

log = logging.getLogger(__name__)

FLAG = "falbridge:inbox-drain-pending"
# Long enough to spare a flood of deliveries all but one publish per drain, short enough
# that a lost drain delays the next wake-up by no more than this.
WAKE_TTL_S = 2.0

_clients: dict[tuple[int, str], redis.Redis] = {}


def _client() -> redis.Redis:
    # One per process and broker: a forked worker must not share its parent's socket.
    key = (os.getpid(), str(ensure_broker().conf.broker_url))
    client = _clients.get(key)
    if client is None:
        client = _clients[key] = redis.Redis.from_url(
            _redis_py_url(key[1]), socket_timeout=3, socket_connect_timeout=3
        )
    return client


def _redis_py_url(broker_url: str) -> str:
    # kombu names a Unix socket redis+socket:///path; redis-py, unix:///path.
    if broker_url.startswith("redis+socket://"):
        return "unix://" + broker_url.removeprefix("redis+socket://")
    return broker_url


def claim_wake() -> bool:
    """True when the caller should publish a drain: no published drain is waiting to
    start. When Redis can't say, True: the publish that follows then fails fast, logged."""
    try:
        return bool(_client().set(FLAG, b"1", nx=True, px=int(WAKE_TTL_S * 1000)))
    except redis.RedisError as exc:
        log.debug("drain wake-up flag unavailable: %s", exc)
        return True


def release_wake() -> None:
    """A drain is starting (or a publish failed): the next delivery must wake another."""
    try:
        _client().delete(FLAG)
    except redis.RedisError as exc:
        # The flag expires within WAKE_TTL_S anyway.
        log.debug("could not clear the drain wake-up flag: %s", exc)
