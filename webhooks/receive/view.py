"""POST /webhooks/fal: verify, store, wake the inbox drain after commit, answer in milliseconds."""

from __future__ import annotations

import json
import logging

from flask import Blueprint, jsonify, request
from flask.typing import ResponseReturnValue

from falbridge import strict_json
from falbridge.models.db import transaction
from falbridge.models.inbox import store_rejected, store_verified
from falbridge.webhooks import current
from falbridge.webhooks.errors import error_response
from falbridge.webhooks.limits import read_body
from falbridge.webhooks.receive.jwks import JwksUnavailable
from falbridge.webhooks.receive.verify import (
    HEADER_REQUEST_ID,
    SIGNATURE_HEADERS,
    VerificationError,
    VerifiedHeaders,
    verify,
)
from falbridge.worker import metrics, observe
from falbridge.worker.tasks import wake_drainer

log = logging.getLogger(__name__)
receiver = Blueprint("receiver", __name__)

_KEPT_HEADERS = (*SIGNATURE_HEADERS, "Content-Type", "User-Agent")
# A cap on stored header values: a rejected delivery is evidence, not a place to park megabytes.
_MAX_STORED_HEADER = 1024
MAX_REQUEST_ID = 128  # webhook_deliveries.request_id and jobs.request_id are VARCHAR(128)


def _storable(value: str | None) -> str | None:
    if value is None:
        return None
    # What the database can't hold in text or JSON (NUL, lone surrogates) is escaped.
    return strict_json.UNSTORABLE.sub(lambda m: f"\\u{ord(m.group()):04x}", value[:_MAX_STORED_HEADER])


def _body_request_id(body: bytes) -> str | None:
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):  # a signed body can still be nested 100 000 deep
        return None
    value = doc.get("request_id") if isinstance(doc, dict) else None
    return value if isinstance(value, str) else None


@receiver.post("/webhooks/fal")
def fal_webhook() -> ResponseReturnValue:
    """Verify, store (committed), enqueue its application, answer: fal retries a 5xx."""
    headers = _kept_headers()
    missing = [name for name in SIGNATURE_HEADERS if not (request.headers.get(name) or "").strip()]
    if missing:
        # Refused before its body is read: an unsigned body costs a row of headers, no more.
        reason = f"missing header(s): {', '.join(missing)}"
        _store_rejected(headers.get(HEADER_REQUEST_ID), "missing_headers", reason, headers, None)
        return error_response(401, "invalid_signature", reason, headers={"Connection": "close"})
    body = read_body(current.config().receiver.max_body_bytes, "FALBRIDGE_MAX_WEBHOOK_BYTES")
    try:
        with metrics.verification():
            verified = _verify(body)
    except JwksUnavailable as exc:
        log.error("cannot verify webhooks: %s", exc)
        observe.delivery_received("unavailable", None, _storable(headers.get(HEADER_REQUEST_ID)), None)
        return error_response(503, "jwks_unavailable", "cannot verify signatures right now; retry later")
    except VerificationError as exc:
        _store_rejected(headers.get(HEADER_REQUEST_ID), exc.code, exc.reason, headers, body)
        return error_response(401, "invalid_signature", exc.reason)
    unusable = _unusable(verified, body)
    if unusable is not None:
        code, reason = unusable
        _store_rejected(_storable(verified.request_id), code, reason, headers, body)
        return error_response(401, code, reason)
    with transaction() as s:
        stored = store_verified(s, request_id=verified.request_id, body=body, headers=headers)
    outcome = "duplicate" if stored.duplicate else "stored"
    observe.delivery_received(outcome, stored.delivery_id, verified.request_id, None)
    if not stored.processed:
        # Stored and committed: a drain applies it (with whatever else the inbox holds);
        # if Redis is down now, the sweeper applies it later.
        wake_drainer()
    return jsonify(received=True, delivery_id=stored.delivery_id, duplicate=stored.duplicate), 200


def _kept_headers() -> dict[str, str | None]:
    headers = {name: _storable(request.headers[name]) for name in _KEPT_HEADERS if name in request.headers}
    headers["query_job_id"] = _storable(request.args.get("job"))
    headers["query_token"] = _storable(request.args.get("token"))
    return headers


def _verify(body: bytes) -> VerifiedHeaders:
    receiver = current.config().receiver
    return verify(
        request.headers,
        body,
        current.jwks(),
        tolerance_s=receiver.timestamp_tolerance_s,
        expected_user_id=receiver.webhook_user_id,
    )


def _unusable(verified: VerifiedHeaders, body: bytes) -> tuple[str, str] | None:
    """(code, reason) when a correctly signed callback still can't be applied."""
    if _body_request_id(body) != verified.request_id:
        # Signed, but the signature covers the header's id: a body naming another request
        # must not be applied to it.
        return "request_id_mismatch", "X-Fal-Webhook-Request-Id does not match the body's request_id"
    if len(verified.request_id) > MAX_REQUEST_ID or _storable(verified.request_id) != verified.request_id:
        # fal's ids are UUIDs; one the database can't hold would fail the insert (a 500,
        # retried by fal forever), so it is recorded as a rejection instead.
        reason = f"request id is not storable (over {MAX_REQUEST_ID} characters, NUL or surrogate)"
        return "unusable_request_id", reason
    return None


def _store_rejected(
    request_id: str | None, code: str, reason: str, headers: dict[str, str | None], body: bytes | None
) -> None:
    with transaction() as s:
        delivery_id = store_rejected(
            s,
            request_id=request_id,
            code=code,
            reason=reason,
            headers=headers,
            body=body,
            declared_length=request.content_length,
        )
    observe.delivery_received("rejected", delivery_id, request_id, code)
