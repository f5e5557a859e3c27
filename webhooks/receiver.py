"""POST /webhooks/fal: verify, store, enqueue after commit, answer in milliseconds."""

from __future__ import annotations

import json
import logging
import re

from flask import Blueprint, current_app, jsonify, request

from falbridge.models.db import transaction
from falbridge.models.inbox import store_rejected, store_verified
from falbridge.webhooks.errors import error_response
from falbridge.webhooks.limits import read_body
from falbridge.webhooks.verify import (
    HEADER_REQUEST_ID,
    SIGNATURE_HEADERS,
    JwksCache,
    JwksUnavailable,
    VerificationError,
    verify,
)
from falbridge.worker.celery_app import enqueue
from falbridge.worker.tasks import process_delivery

log = logging.getLogger(__name__)
receiver = Blueprint("receiver", __name__)

_KEPT_HEADERS = (*SIGNATURE_HEADERS, "Content-Type", "User-Agent")
# What the database can't hold in text or JSON (NUL, lone surrogates), and a cap on
# stored header values: a rejected delivery is evidence, not a place to park megabytes.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
_MAX_STORED_HEADER = 1024
MAX_REQUEST_ID = 128  # webhook_deliveries.request_id and jobs.request_id are VARCHAR(128)


def _jwks() -> JwksCache:
    cache = current_app.extensions.get("falbridge_jwks")
    if cache is None:
        settings = current_app.config["RECEIVER"]
        cache = JwksCache(
            settings.jwks_url,
            ttl_s=settings.jwks_cache_ttl_s,
            refetch_min_age_s=settings.jwks_refetch_min_age_s,
        )
        current_app.extensions["falbridge_jwks"] = cache
    return cache


def _storable(value: str | None) -> str | None:
    if value is None:
        return None
    return _UNSTORABLE.sub(lambda m: f"\\u{ord(m.group()):04x}", value[:_MAX_STORED_HEADER])


def _body_request_id(body: bytes) -> str | None:
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):  # a signed body can still be nested 100 000 deep
        return None
    value = doc.get("request_id") if isinstance(doc, dict) else None
    return value if isinstance(value, str) else None


@receiver.post("/webhooks/fal")
def fal_webhook():
    settings = current_app.config["RECEIVER"]
    body = read_body(settings.max_body_bytes, "FALBRIDGE_MAX_WEBHOOK_BYTES")  # 413 past it
    headers = {name: _storable(request.headers[name]) for name in _KEPT_HEADERS if name in request.headers}
    headers["query_job_id"] = _storable(request.args.get("job"))
    try:
        verified = verify(
            request.headers,
            body,
            _jwks(),
            tolerance_s=settings.timestamp_tolerance_s,
            expected_user_id=settings.webhook_user_id,
        )
    except JwksUnavailable as exc:
        log.error("cannot verify webhooks: %s", exc)
        return error_response(503, "jwks_unavailable", "cannot verify signatures right now; retry later")
    except VerificationError as exc:
        with transaction() as s:
            store_rejected(
                s, request_id=headers.get(HEADER_REQUEST_ID), body=body, headers=headers, reason=exc.reason
            )
        return error_response(401, "invalid_signature", exc.reason)

    code = reason = None
    if _body_request_id(body) != verified.request_id:
        # Signed, but the signature covers the header's id: a body naming another request
        # must not be applied to it.
        code, reason = "request_id_mismatch", "X-Fal-Webhook-Request-Id does not match the body's request_id"
    elif len(verified.request_id) > MAX_REQUEST_ID or _storable(verified.request_id) != verified.request_id:
        # fal's ids are UUIDs; one the database can't hold would fail the insert (a 500,
        # retried by fal forever), so it is recorded as a rejection instead.
        code = "unusable_request_id"
        reason = f"request id is not storable (over {MAX_REQUEST_ID} characters, NUL or surrogate)"
    if reason is not None:
        with transaction() as s:
            store_rejected(
                s, request_id=_storable(verified.request_id), body=body, headers=headers, reason=reason
            )
        return error_response(401, code, reason)

    with transaction() as s:
        stored = store_verified(s, request_id=verified.request_id, body=body, headers=headers)
    if not stored.processed:
        # Stored and committed: if Redis is down now, the sweeper processes it later.
        enqueue(process_delivery, stored.delivery_id)
    return jsonify(received=True, delivery_id=stored.delivery_id, duplicate=stored.duplicate), 200
