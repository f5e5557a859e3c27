"""The inbox, directly: what a verified delivery and a rejection store, when a callback is a
re-delivery of one already stored, and counting and pruning rejections."""

from __future__ import annotations

import dataclasses
import hashlib
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from falbridge.models.db import transaction
from falbridge.models.inbox import (
    EVIDENCE_BYTES,
    dedupe_key,
    prune_rejected,
    rejection_counts,
    store_rejected,
    store_verified,
)
from falbridge.models.tables import WebhookDelivery, utcnow

KIB = 1024


def _rows(s) -> list[WebhookDelivery]:
    return list(s.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id)))


def _reject(s, code: str = "bad_signature", body: bytes | None = b"{}", **kwargs) -> int:
    return store_rejected(
        s,
        request_id=kwargs.pop("request_id", "req-x"),
        code=code,
        reason="r",
        headers={},
        body=body,
        **kwargs,
    )


def _set_received_at(engine, ids, at) -> None:
    with transaction(engine) as s:
        s.execute(update(WebhookDelivery).where(WebhookDelivery.id.in_(ids)).values(received_at=at))


def test_a_verified_delivery_is_kept_whole(engine):
    body = b'{"request_id": "req-1", "status": "OK", "payload": {"x": "' + b"y" * 20_000 + b'"}}'
    before = utcnow()
    with transaction(engine) as s:
        stored = store_verified(s, request_id="req-1", body=body, headers={"User-Agent": "fal"})
    assert (stored.duplicate, stored.processed) == (False, False)
    with transaction(engine) as s:
        [row] = _rows(s)
    assert row.id == stored.delivery_id
    assert (row.request_id, row.body, row.body_length) == ("req-1", body, len(body))
    assert row.body_sha256 == hashlib.sha256(body).hexdigest()
    assert row.dedupe_key == dedupe_key("req-1", body)
    assert row.headers == {"User-Agent": "fal"} and row.verified and row.rejected_as is None
    assert row.redeliveries == 0 and row.processed_at is None and row.outcome is None
    assert before <= row.received_at <= utcnow()


def test_bodies_that_differ_only_after_the_first_kib_are_two_deliveries(engine):
    first = b'{"request_id": "req-1", "payload": "' + b"a" * (2 * KIB) + b'"}'
    second = first[: KIB + 100] + b"b" + first[KIB + 101 :]
    assert first[:KIB] == second[:KIB] and first != second
    with transaction(engine) as s:
        one = store_verified(s, request_id="req-1", body=first, headers={})
        two = store_verified(s, request_id="req-1", body=second, headers={})
    assert not one.duplicate and not two.duplicate and one.delivery_id != two.delivery_id
    with transaction(engine) as s:
        assert [(r.body, r.redeliveries) for r in _rows(s)] == [(first, 0), (second, 0)]


def test_the_same_body_for_another_request_is_another_delivery(engine):
    with transaction(engine) as s:
        one = store_verified(s, request_id="req-1", body=b"{}", headers={})
        two = store_verified(s, request_id="req-2", body=b"{}", headers={})
    assert not two.duplicate and one.delivery_id != two.delivery_id
    assert dedupe_key("req-1", b"{}") != dedupe_key("req-2", b"{}")


def test_a_redelivery_is_one_row_and_counted(engine):
    with transaction(engine) as s:
        first = store_verified(s, request_id="req-1", body=b"{}", headers={})
    with transaction(engine) as s:
        again = store_verified(s, request_id="req-1", body=b"{}", headers={"User-Agent": "other"})
        third = store_verified(s, request_id="req-1", body=b"{}", headers={})
    assert again == third == type(first)(first.delivery_id, duplicate=True, processed=False)
    with transaction(engine) as s:
        [row] = _rows(s)
    assert row.redeliveries == 2 and row.headers == {}  # the first delivery's row, as stored


def test_a_redelivery_counts_on_its_own_row_among_many(engine):
    bodies = [f'{{"n": {i}}}'.encode() for i in range(6)]
    with transaction(engine) as s:
        ids = [store_verified(s, request_id="req-1", body=b, headers={}).delivery_id for b in bodies]
    for times, body in enumerate(bodies):
        with transaction(engine) as s:
            for _ in range(times):
                assert store_verified(s, request_id="req-1", body=body, headers={}).delivery_id == ids[times]
    with transaction(engine) as s:
        assert [(r.id, r.redeliveries) for r in _rows(s)] == list(zip(ids, range(6), strict=True))


def test_a_stored_result_cannot_be_changed_or_called_positionally(engine):
    """What the receiver decides on is a frozen value; the request id and the body, both
    plain values, cannot be swapped by position."""
    with transaction(engine) as s:
        stored = store_verified(s, request_id="req-1", body=b"{}", headers={})
        with pytest.raises(dataclasses.FrozenInstanceError):
            stored.processed = True  # type: ignore[misc]
        with pytest.raises(TypeError):
            store_verified(s, "req-1", b"{}", {})  # type: ignore[misc]
        with pytest.raises(TypeError):
            store_rejected(s, "req-1", "bad_signature", "r", {}, b"{}")  # type: ignore[misc]
        with pytest.raises(TypeError):
            prune_rejected(s, utcnow(), 10)  # type: ignore[misc]


def test_a_redelivery_of_a_stored_but_unprocessed_delivery_says_so(engine):
    """The receiver enqueues a delivery again when `store_verified` says it is not processed
    (its first enqueue may have been lost with the broker); once processed it is not."""
    with transaction(engine) as s:
        first = store_verified(s, request_id="req-1", body=b"{}", headers={})
    with transaction(engine) as s:
        again = store_verified(s, request_id="req-1", body=b"{}", headers={})
    assert again.duplicate and not again.processed
    with transaction(engine) as s:
        s.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id == first.delivery_id)
            .values(processed_at=utcnow(), outcome="applied")
        )
    with transaction(engine) as s:
        late = store_verified(s, request_id="req-1", body=b"{}", headers={})
    assert late.duplicate and late.processed and late.delivery_id == first.delivery_id


def test_a_rejection_keeps_the_digest_length_and_first_4_kib_of_its_body(engine):
    body = bytes(range(256)) * 20  # 5120 bytes
    before = utcnow()
    with transaction(engine) as s:
        delivery_id = store_rejected(
            s,
            request_id="req-1",
            code="bad_signature",
            reason="signature does not verify",
            headers={"X-Fal-Webhook-Request-Id": "req-1"},
            body=body,
            declared_length=99,
        )
    with transaction(engine) as s:
        [row] = _rows(s)
    assert row.id == delivery_id and EVIDENCE_BYTES == 4 * KIB
    assert (row.body, row.body_length, row.body_sha256) == (
        body[: 4 * KIB],
        len(body),
        hashlib.sha256(body).hexdigest(),
    )
    assert (row.request_id, row.rejected_as, row.rejection_reason) == (
        "req-1",
        "bad_signature",
        "signature does not verify",
    )
    assert row.headers == {"X-Fal-Webhook-Request-Id": "req-1"}
    assert not row.verified and row.dedupe_key is None and row.outcome == "rejected"
    assert before <= row.received_at <= utcnow() and before <= row.processed_at <= utcnow()


def test_a_rejection_refused_unread_keeps_its_declared_length_only(engine):
    with transaction(engine) as s:
        _reject(s, "missing_headers", body=None, declared_length=2_000_000)
        _reject(s, "missing_headers", body=None)
    with transaction(engine) as s:
        assert [(r.body, r.body_length, r.body_sha256) for r in _rows(s)] == [
            (b"", 2_000_000, None),
            (b"", None, None),
        ]


def test_a_small_rejected_body_is_kept_whole(engine):
    with transaction(engine) as s:
        _reject(s, body=b"x" * (4 * KIB), declared_length=7)
        _reject(s, body=b"", declared_length=7)
    with transaction(engine) as s:
        assert [(r.body, r.body_length) for r in _rows(s)] == [(b"x" * (4 * KIB), 4 * KIB), (b"", 0)]


def test_a_rejection_trims_what_its_columns_cannot_hold(engine):
    with transaction(engine) as s:
        _reject(s, "c" * 40, request_id="r" * 200)
        _reject(s, "short", request_id="")
        _reject(s, "short", request_id=None)
    with transaction(engine) as s:
        assert [(r.request_id, r.rejected_as) for r in _rows(s)] == [
            ("r" * 128, "c" * 32),
            (None, "short"),
            (None, "short"),
        ]


def test_rejections_are_counted_by_code_and_verified_deliveries_are_not(engine):
    with transaction(engine) as s:
        _reject(s, "bad_signature")
        _reject(s, "bad_signature")
        _reject(s, "missing_headers", body=None)
        _reject(s, "")
        store_verified(s, request_id="req-1", body=b"{}", headers={})
    with transaction(engine) as s:
        assert rejection_counts(s) == {"bad_signature": 2, "missing_headers": 1, "unknown": 1}


def test_rejections_are_counted_since_a_time_inclusive(engine):
    now = utcnow().replace(microsecond=0)
    with transaction(engine) as s:
        old, at, young = _reject(s, "old"), _reject(s, "at"), _reject(s, "young")
    _set_received_at(engine, [old], now - timedelta(seconds=1))
    _set_received_at(engine, [at], now)
    _set_received_at(engine, [young], now + timedelta(seconds=1))
    with transaction(engine) as s:
        assert rejection_counts(s, since=now) == {"at": 1, "young": 1}
        assert rejection_counts(s) == {"old": 1, "at": 1, "young": 1}


def test_pruning_deletes_rejections_received_before_the_cutoff_only(engine):
    cutoff = utcnow().replace(microsecond=0) - timedelta(days=7)
    with transaction(engine) as s:
        old = [_reject(s) for _ in range(2)]
        at, young = _reject(s), _reject(s)
        verified = store_verified(s, request_id="req-1", body=b"{}", headers={}).delivery_id
    _set_received_at(engine, [*old, verified], cutoff - timedelta(seconds=1))
    _set_received_at(engine, [at], cutoff)
    with transaction(engine) as s:
        assert prune_rejected(s, received_before=cutoff, batch=10) == 2
    with transaction(engine) as s:
        assert [r.id for r in _rows(s)] == [at, young, verified]
        assert prune_rejected(s, received_before=cutoff, batch=10) == 0


def test_pruning_deletes_at_most_a_batch(engine):
    cutoff = utcnow()
    with transaction(engine) as s:
        ids = [_reject(s) for _ in range(5)]
    _set_received_at(engine, ids, cutoff - timedelta(days=30))
    with transaction(engine) as s:
        assert prune_rejected(s, received_before=cutoff, batch=2) == 2
    with transaction(engine) as s:
        assert s.scalar(select(func.count()).select_from(WebhookDelivery)) == 3
        assert prune_rejected(s, received_before=cutoff, batch=2) == 2
        assert prune_rejected(s, received_before=cutoff, batch=2) == 1
        assert prune_rejected(s, received_before=cutoff, batch=2) == 0
