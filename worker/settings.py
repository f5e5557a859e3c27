"""Runtime settings, read from the environment once per process (see README for each)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache


def _float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    return float(raw) if raw not in (None, "") else default


@dataclass(frozen=True)
class WorkerSettings:
    public_base_url: str
    submit_lease_s: float
    submit_max_retries: int
    # None means "not set": the reconciler's defaults apply (issue: reconciliation).
    redis_url: str | None

    @property
    def webhook_url_base(self) -> str:
        return self.public_base_url.rstrip("/") + "/webhooks/fal"


@lru_cache(maxsize=1)
def settings() -> WorkerSettings:
    return WorkerSettings(
        public_base_url=os.environ.get("PUBLIC_BASE_URL", "http://127.0.0.1:8000"),
        submit_lease_s=_float("FALBRIDGE_SUBMIT_LEASE_S", 120.0),
        submit_max_retries=int(_float("FALBRIDGE_SUBMIT_MAX_RETRIES", 8)),
        redis_url=os.environ.get("REDIS_URL") or None,
    )


def reload_settings() -> WorkerSettings:
    settings.cache_clear()
    return settings()
