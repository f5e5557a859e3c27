"""Rejected callbacks are evidence, not storage: an unsigned one is refused unread, a badly
signed one keeps its digest, length and first 4 KiB, and the sweeper prunes them."""

from __future__ import annotations

import hashlib
import json
import os
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from falbridge.config import SweepConfig
from falbridge.models.db import transaction
from falbridge.models.inbox import rejection_counts
from falbridge.models.tables import WebhookDelivery, utcnow
from falbridge.webhooks.app import create_app
from falbridge.worker import inline
from falbridge.worker.sweep import sweep
from tests.plugins.db import config_with
from tests.webhooks.receive.test_signatures import signed_headers

TWO_MB = 2_000_000


@pytest.fixture
def receiver(db_url, redis_url, sandbox, monkeypatch):
    monkeypatch.setenv("REDIS_URL", redis_url)
    return create_app(config_with(FAL_JWKS_URL=sandbox.jwks_url)).test_client()


def _stored_bytes() -> int:
    """What the inbox holds in bodies, in all."""
    with transaction() as s:
        return s.scalar(select(func.coalesce(func.sum(func.length(WebhookDelivery.body)), 0)))


def test_five_unsigned_2mb_posts_store_no_body(receiver):
    answers = [receiver.post("/webhooks/fal", data=os.urandom(TWO_MB)) for _ in range(5)]
    assert [a.status_code for a in answers] == [401] * 5
    assert _stored_bytes() == 0
    assert all(a.headers.get("Connection") == "close" for a in answers)  # nothing left to read
    with transaction() as s:
        rows = s.scalars(select(WebhookDelivery)).all()
        assert [(r.rejected_as, r.body_length, r.body_sha256) for r in rows] == [
            ("missing_headers", TWO_MB, None)
        ] * 5


def test_a_badly_signed_body_keeps_its_digest_length_and_first_4_kib(receiver, sandbox_server):
    body = json.dumps({"request_id": "req-1", "status": "OK", "payload": {"x": "y" * TWO_MB}}).encode()
    headers = signed_headers(sandbox_server, b"another body", request_id="req-1")
    assert receiver.post("/webhooks/fal", data=body, headers=headers).status_code == 401
    with transaction() as s:
        row = s.scalars(select(WebhookDelivery)).one()
    assert (row.rejected_as, row.body_length, row.body_sha256) == (
        "bad_signature",
        len(body),
        hashlib.sha256(body).hexdigest(),
    )
    assert row.body == body[:4096] and row.headers["X-Fal-Webhook-Request-Id"] == "req-1"


def test_verified_deliveries_are_kept_whole(receiver, sandbox_server):
    body = json.dumps({"request_id": "req-2", "status": "OK", "payload": {"x": "y" * 10_000}}).encode()
    answer = receiver.post(
        "/webhooks/fal", data=body, headers=signed_headers(sandbox_server, body, request_id="req-2")
    )
    assert answer.status_code == 200
    with transaction() as s:
        row = s.scalars(select(WebhookDelivery)).one()
    assert row.verified and row.body == body and row.body_length == len(body) and row.rejected_as is None


def test_rejections_are_counted_by_reason(receiver, sandbox, sandbox_server):
    receiver.post("/webhooks/fal", data=b"{}")
    receiver.post("/webhooks/fal", data=b"{}")
    stale = signed_headers(sandbox_server, b"{}", request_id="req-3", timestamp="1000")
    receiver.post("/webhooks/fal", data=b"{}", headers=stale)
    foreign = signed_headers(sandbox_server, b"{}", request_id="req-4", user_id="someone-else")
    create_app(
        config_with(FAL_JWKS_URL=sandbox.jwks_url, FAL_WEBHOOK_USER_ID="sandbox-user")
    ).test_client().post("/webhooks/fal", data=b"{}", headers=foreign)
    with transaction() as s:
        assert rejection_counts(s) == {"missing_headers": 2, "stale_timestamp": 1, "foreign_user": 1}


def test_the_sweeper_prunes_rejections_past_their_retention_and_nothing_else(receiver, sandbox_server):
    receiver.post("/webhooks/fal", data=b"old")
    receiver.post("/webhooks/fal", data=b"young")
    body = json.dumps({"request_id": "req-5", "status": "OK", "payload": {}}).encode()
    receiver.post(
        "/webhooks/fal", data=body, headers=signed_headers(sandbox_server, body, request_id="req-5")
    )
    with transaction() as s:
        old, young, verified = s.scalars(select(WebhookDelivery.id).order_by(WebhookDelivery.id)).all()
        # The first rejection and the verified delivery are more than a week old.
        week_ago = utcnow() - timedelta(days=8)
        s.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id.in_([old, verified]))
            .values(received_at=week_ago)
        )
    report = sweep(inline.run, SweepConfig(delivery_grace_s=3600))
    assert report.pruned_rejections == 1
    with transaction() as s:
        assert s.scalars(select(WebhookDelivery.id).order_by(WebhookDelivery.id)).all() == [young, verified]
