"""What the app serving this request was built with: its configuration, and the JWKS
cache its receiver shares across requests."""

from __future__ import annotations

import threading

from flask import current_app

from falbridge.config import Config
from falbridge.webhooks.receive.jwks import JwksCache


def config() -> Config:
    cfg: Config = current_app.config["FALBRIDGE"]
    return cfg


_building = threading.Lock()


def jwks() -> JwksCache:
    cache: JwksCache | None = current_app.extensions.get("falbridge_jwks")
    if cache is None:
        # One per app even when its first requests arrive together: two caches would be two
        # fetches, and two backoffs that know nothing of each other.
        with _building:
            cache = current_app.extensions.get("falbridge_jwks")
            if cache is None:
                receiver = config().receiver
                cache = JwksCache(
                    receiver.jwks_url,
                    ttl_s=receiver.jwks_cache_ttl_s,
                    refetch_min_age_s=receiver.jwks_refetch_min_age_s,
                    retry_after_s=receiver.jwks_retry_after_s,
                )
                current_app.extensions["falbridge_jwks"] = cache
    return cache
