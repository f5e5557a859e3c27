"""Shared steps of the outgoing-webhook tests."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select
from standardwebhooks.webhooks import Webhook

from falbridge.models.db import transaction
from falbridge.models.jobs import create_job, lock_job, transition
from falbridge.models.states import EventSource, JobStatus
from falbridge.models.tables import EventDelivery, Subscription
from falbridge.worker import metrics
from tests.plugins.sandbox import ReceivedRequest


def new_job(**fields: Any):
    with transaction() as s:
        job, _ = create_job(s, "fal-ai/some/model", {"prompt": "big input"}, metadata={"order": 7}, **fields)
    return job


def move(job_id, *statuses: JobStatus, **fields: Any) -> None:
    for status in statuses:
        with transaction() as s:
            transition(s, lock_job(s, job_id), status, EventSource.WEBHOOK, **fields)


def complete(job_id) -> None:
    move(job_id, JobStatus.SUBMITTED, JobStatus.IN_PROGRESS)
    move(job_id, JobStatus.COMPLETED, result={"boxes": [1, 2]})


def deliveries(**where: Any) -> list[EventDelivery]:
    with transaction() as s:
        query = select(EventDelivery).order_by(EventDelivery.id)
        for name, value in where.items():
            query = query.where(getattr(EventDelivery, name) == value)
        return list(s.scalars(query))


def one_delivery(**where: Any) -> EventDelivery:
    [found] = deliveries(**where)
    return found


def subscription(subscription_id) -> Subscription:
    with transaction() as s:
        return s.get(Subscription, subscription_id)


def verified(request: ReceivedRequest, *secrets: str) -> dict[str, Any]:
    """The body, after standardwebhooks verified its signature with every secret given."""
    for secret in secrets:
        Webhook(secret).verify(request.body, request.headers)
    return json.loads(request.body)


def attempts_counted() -> dict[str, float]:
    """falbridge_outgoing_delivery_attempts_total by result, as this process counted them."""
    counted = metrics.get()
    assert counted is not None
    return {
        sample.labels["result"]: sample.value
        for family in counted.outgoing_attempts.collect()
        for sample in family.samples
        if sample.name.endswith("_total")
    }


def counted_since(before: dict[str, float]) -> dict[str, float]:
    """The attempts counted since `before`, by result (results not counted left out)."""
    return {
        result: n - before.get(result, 0.0)
        for result, n in attempts_counted().items()
        if n != before.get(result)
    }
