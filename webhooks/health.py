"""GET /readyz: whether this process can do its work now (database, Redis, fal's keys,
the schema at the migrations' head), each check named in the answer; and GET /metrics.

/healthz (in app.py) only says the process answers; an orchestrator restarts on that and
routes traffic on this.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import redis
from alembic.script import ScriptDirectory
from flask import Blueprint, Response, current_app, request
from flask.typing import ResponseReturnValue
from redis.backoff import NoBackoff
from redis.retry import Retry
from sqlalchemy import text

from falbridge import config
from falbridge.models.db import get_engine
from falbridge.models.migrate import alembic_config, current_revision
from falbridge.webhooks import current
from falbridge.webhooks.errors import ApiError
from falbridge.worker import metrics
from falbridge.worker.celery_app import ensure_broker

log = logging.getLogger(__name__)
health = Blueprint("health", __name__)
CHECK_TIMEOUT_S = 2.0


def check_database() -> str | None:
    with get_engine().connect() as conn:
        conn.execute(text("SELECT 1"))
    return None


def check_migrations() -> str | None:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    at = current_revision()
    return None if at == head else f"database at revision {at}, migrations' head is {head}"


def check_redis() -> str | None:
    url = config.current().broker.redis_url or str(ensure_broker().conf.broker_url)
    # Celery's name for a Unix socket; redis-py's is unix://.
    url = "unix://" + url.removeprefix("redis+socket://") if url.startswith("redis+socket://") else url
    client = redis.Redis.from_url(
        url,
        socket_timeout=CHECK_TIMEOUT_S,
        socket_connect_timeout=CHECK_TIMEOUT_S,
        retry=Retry(NoBackoff(), 0),  # one try: a refused connection is the answer
    )
    try:
        client.ping()
    finally:
        client.close()
    return None


def check_jwks() -> str | None:
    current.jwks().keys()  # the cached keys, or fetched now (JwksUnavailable when neither)
    return None


CHECKS: dict[str, Callable[[], str | None]] = {
    "database": check_database,
    "migrations": check_migrations,
    "redis": check_redis,
    "jwks": check_jwks,
}


@health.get("/readyz")
def readyz() -> ResponseReturnValue:
    """200 when every check passes, else 503; the body names each check and what failed."""
    results: dict[str, dict[str, object]] = {}
    for name, check in CHECKS.items():
        if name == "migrations" and not results["database"]["ok"]:
            results[name] = {"ok": False, "error": "database unreachable"}
            continue
        try:
            problem = check()
        except Exception as exc:  # each check reports its own failure; none stops the others
            # The exception's type and first line only: a driver's message can hold a URL.
            problem = f"{type(exc).__name__}: {_first_line(exc)}"
        results[name] = {"ok": problem is None} | ({"error": problem} if problem else {})
    failed = [name for name, result in results.items() if not result["ok"]]
    if failed:
        log.warning("not ready: %s", ", ".join(failed))
    return {"ready": not failed, "failed": failed, "checks": results}, 503 if failed else 200


def _first_line(exc: Exception) -> str:
    line = (str(exc).strip().splitlines() or [""])[0]
    return line[:300]


@health.get("/metrics")
def metrics_page() -> ResponseReturnValue:
    cfg = current.config().observability
    if cfg.metrics == "off":
        raise ApiError(404, "not_found", "metrics are off (FALBRIDGE_METRICS=off)")
    if not cfg.metrics_public:
        current_app.extensions["falbridge_auth"].check(request.headers.get("Authorization"))
    body, content_type = metrics.exposition()
    return Response(body, content_type=content_type)
