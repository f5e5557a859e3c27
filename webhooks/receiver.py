"""POST /webhooks/fal: verify, store, enqueue after commit, answer in milliseconds."""
from __future__ import annotations

import json
import logging

from flask import Blueprint, current_app, jsonify, request

from models.db import transaction
from models.inbox import store_rejected, store_verified
from webhooks.errors import error_response
from webhooks.verify import (SIGNATURE_HEADERS, JwksCache, JwksUnavailable, VerificationError,
                             verify)
from worker.celery_app import enqueue
from worker.tasks import process_delivery

log = logging.getLogger(__name__)
receiver = Blueprint("receiver", __name__)

_KEPT_HEADERS = (*SIGNATURE_HEADERS, "Content-Type", "User-Agent")


def _jwks() -> JwksCache:
    cache = current_app.extensions.get("falbridge_jwks")
    if cache is None:
        settings = current_app.config["RECEIVER"]
        cache = JwksCache(settings.jwks_url, ttl_s=settings.jwks_cache_ttl_s,
                          refetch_min_age_s=settings.jwks_refetch_min_age_s)
        current_app.extensions["falbridge_jwks"] = cache
    return cache


def _body_request_id(body: bytes) -> str | None:
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    value = doc.get("request_id") if isinstance(doc, dict) else None
    return value if isinstance(value, str) else None


@receiver.post("/webhooks/fal")
def fal_webhook():
    settings = current_app.config["RECEIVER"]
    body = request.get_data(cache=False)
    headers = {name: request.headers[name] for name in _KEPT_HEADERS if name in request.headers}
    headers["query_job_id"] = request.args.get("job")
    try:
        verified = verify(request.headers, body, _jwks(), tolerance_s=settings.timestamp_tolerance_s,
                          expected_user_id=settings.webhook_user_id)
    except JwksUnavailable as exc:
        log.error("cannot verify webhooks: %s", exc)
        return error_response(503, "jwks_unavailable", "cannot verify signatures right now; retry later")
    except VerificationError as exc:
        with transaction() as s:
            store_rejected(s, request_id=headers.get("X-Fal-Webhook-Request-Id"), body=body,
                           headers=headers, reason=exc.reason)
        return error_response(401, "invalid_signature", exc.reason)

    if _body_request_id(body) != verified.request_id:
        # Signed, but the signature covers the header's id: a body naming another request
        # must not be applied to it.
        reason = "X-Fal-Webhook-Request-Id does not match the body's request_id"
        with transaction() as s:
            store_rejected(s, request_id=verified.request_id, body=body, headers=headers, reason=reason)
        return error_response(401, "request_id_mismatch", reason)

    with transaction() as s:
        stored = store_verified(s, request_id=verified.request_id, body=body, headers=headers)
    if not stored.processed:
        # Stored and committed: if Redis is down now, the sweeper processes it later.
        enqueue(process_delivery, stored.delivery_id)
    return jsonify(received=True, delivery_id=stored.delivery_id, duplicate=stored.duplicate), 200
