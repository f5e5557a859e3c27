"""A wake-up flag: "a drain task is published and has not started yet", one Redis key
shared by every process that enqueues (receivers, workers, the beat).

The inbox drain (worker/inbox_wakeup.py) and the submitter (worker/submit_wakeup.py) each
keep one, so that many asks while a drain waits in the queue publish one drain: an ask
that sets the flag (SET NX, one round trip) publishes, a drain clears it before its first
claim, so an ask made during a drain publishes the next one and none is lost. The flag
expires by itself: a drain lost after its publish holds back the next asks only that long.
"""

from __future__ import annotations

import os

import redis

from falbridge.worker.celery_app import ensure_broker

_clients: dict[tuple[int, str], redis.Redis] = {}


class WakeFlag:
    def __init__(self, key: str, ttl_s: float) -> None:
        self.key = key
        self.ttl_s = ttl_s

    def claim(self, longer_by_s: float = 0.0) -> bool:
        """Set the flag unless it is set; True if this call set it (so should publish).
        `longer_by_s`: a drain published with a countdown waits that much longer to start.
        Raises redis.RedisError when Redis cannot say: each caller has its own answer."""
        ttl_ms = int((self.ttl_s + longer_by_s) * 1000)
        return bool(_client().set(self.key, b"1", nx=True, px=ttl_ms))

    def release(self) -> None:
        """Clear the flag (a drain starts, or its publish failed). Raises redis.RedisError."""
        _client().delete(self.key)


def _client() -> redis.Redis:
    # One per process and broker: a forked worker must not share its parent's socket.
    key = (os.getpid(), str(ensure_broker().conf.broker_url))
    client = _clients.get(key)
    if client is None:
        client = _clients[key] = redis.Redis.from_url(
            redis_py_url(key[1]), socket_timeout=3, socket_connect_timeout=3
        )
    return client


def redis_py_url(broker_url: str) -> str:
    # kombu names a Unix socket redis+socket:///path; redis-py, unix:///path.
    if broker_url.startswith("redis+socket://"):
        return "unix://" + broker_url.removeprefix("redis+socket://")
    return broker_url
