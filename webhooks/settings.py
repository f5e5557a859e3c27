"""Receiver settings from the environment (README lists each variable)."""
from __future__ import annotations

import os
from dataclasses import dataclass, replace

FAL_JWKS_URL = "https://rest.fal.ai/.well-known/jwks.json"


@dataclass(frozen=True)
class ReceiverSettings:
    jwks_url: str = FAL_JWKS_URL
    webhook_user_id: str | None = None
    timestamp_tolerance_s: int = 300
    jwks_cache_ttl_s: int = 24 * 3600
    jwks_refetch_min_age_s: int = 60
    max_body_bytes: int = 10 * 1024 * 1024

    @classmethod
    def from_env(cls, **overrides) -> "ReceiverSettings":
        env = os.environ
        base = cls(
            jwks_url=env.get("FAL_JWKS_URL") or FAL_JWKS_URL,
            webhook_user_id=env.get("FAL_WEBHOOK_USER_ID") or None,
            timestamp_tolerance_s=int(env.get("FALBRIDGE_WEBHOOK_TOLERANCE_S", 300)),
            jwks_cache_ttl_s=int(env.get("FALBRIDGE_JWKS_CACHE_TTL_S", 24 * 3600)),
            jwks_refetch_min_age_s=int(env.get("FALBRIDGE_JWKS_REFETCH_MIN_AGE_S", 60)),
            max_body_bytes=int(env.get("FALBRIDGE_MAX_WEBHOOK_BYTES", 10 * 1024 * 1024)),
        )
        return replace(base, **overrides)
