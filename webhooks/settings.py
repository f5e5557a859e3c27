"""Receiver and API settings from the environment (README lists each variable).

API tokens are not here on purpose: a settings object gets printed and logged, so the
tokens live only as digests in webhooks.auth.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace

FAL_JWKS_URL = "https://rest.fal.ai/.well-known/jwks.json"
MIB = 1024 * 1024


@dataclass(frozen=True)
class ReceiverSettings:
    jwks_url: str = FAL_JWKS_URL
    webhook_user_id: str | None = None
    timestamp_tolerance_s: int = 300
    jwks_cache_ttl_s: int = 24 * 3600
    jwks_refetch_min_age_s: int = 60
    max_body_bytes: int = 10 * MIB
    # POST /api/jobs: room for an 8 MiB image inlined as a base64 data URI (worker.datauri's
    # limit, ~10.7 MiB once encoded) plus the rest of the request.
    max_api_body_bytes: int = 16 * MIB
    max_input_bytes: int = 12 * MIB
    max_metadata_bytes: int = 64 * 1024
    # Deeper than any real model input; stops stack-heavy documents long before Python's
    # recursion limit (which would otherwise surface as a RecursionError).
    max_json_depth: int = 32

    @classmethod
    def from_env(cls, **overrides) -> ReceiverSettings:
        env = os.environ
        base = cls(
            jwks_url=env.get("FAL_JWKS_URL") or FAL_JWKS_URL,
            webhook_user_id=env.get("FAL_WEBHOOK_USER_ID") or None,
            timestamp_tolerance_s=int(env.get("FALBRIDGE_WEBHOOK_TOLERANCE_S", 300)),
            jwks_cache_ttl_s=int(env.get("FALBRIDGE_JWKS_CACHE_TTL_S", 24 * 3600)),
            jwks_refetch_min_age_s=int(env.get("FALBRIDGE_JWKS_REFETCH_MIN_AGE_S", 60)),
            max_body_bytes=int(env.get("FALBRIDGE_MAX_WEBHOOK_BYTES", 10 * MIB)),
            max_api_body_bytes=int(env.get("FALBRIDGE_MAX_API_BODY_BYTES", 16 * MIB)),
            max_input_bytes=int(env.get("FALBRIDGE_MAX_INPUT_BYTES", 12 * MIB)),
            max_metadata_bytes=int(env.get("FALBRIDGE_MAX_METADATA_BYTES", 64 * 1024)),
            max_json_depth=int(env.get("FALBRIDGE_MAX_JSON_DEPTH", 32)),
        )
        settings = replace(base, **overrides)
        for f in fields(settings):
            # A zero or negative limit would reject everything (or, for werkzeug, nothing).
            if f.name.startswith("max_") and getattr(settings, f.name) < 1:
                raise ValueError(f"{f.name} must be at least 1")
        return settings
