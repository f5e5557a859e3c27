"""What the app serving this request was built with: its configuration, and the JWKS
cache its receiver shares across requests."""

from __future__ import annotations

from flask import current_app

from falbridge.config import Config
from falbridge.webhooks.receive.verify import JwksCache


def config() -> Config:
    cfg: Config = current_app.config["FALBRIDGE"]
    return cfg


def jwks() -> JwksCache:
    cache: JwksCache | None = current_app.extensions.get("falbridge_jwks")
    if cache is None:
        receiver = config().receiver
        cache = JwksCache(
            receiver.jwks_url,
            ttl_s=receiver.jwks_cache_ttl_s,
            refetch_min_age_s=receiver.jwks_refetch_min_age_s,
        )
        current_app.extensions["falbridge_jwks"] = cache
    return cache
