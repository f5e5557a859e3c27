"""The metrics that are state, not events: read from the database at each scrape, so
every process's /metrics (and any replica's) tells the same and none keeps a gauge."""

from __future__ import annotations

import logging
from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from falbridge.models.db import transaction
from falbridge.models.listing import JobFilters, status_counts
from falbridge.models.tables import EventDelivery, WebhookDelivery

log = logging.getLogger(__name__)

# Outgoing deliveries still to be made: waiting for their time, or being attempted.
_OUTBOX_OPEN = ("pending", "in_flight")


class DatabaseCollector(Collector):
    def collect(self) -> Iterator[GaugeMetricFamily]:
        up = GaugeMetricFamily("falbridge_metrics_database_up", "Whether this scrape could read the database")
        try:
            families = list(_read())
        except Exception as exc:  # a scrape answers without these rather than failing whole
            log.warning("metrics: cannot read the database: %s", type(exc).__name__)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families


def _read() -> Iterator[GaugeMetricFamily]:
    with transaction() as s:
        by_status = status_counts(s, JobFilters())
        inbox = s.scalar(
            select(func.count())
            .select_from(WebhookDelivery)
            .where(WebhookDelivery.verified.is_(True), WebhookDelivery.processed_at.is_(None))
        )
        outbox = dict(
            s.execute(
                select(EventDelivery.status, func.count())
                .where(EventDelivery.status.in_(_OUTBOX_OPEN))
                .group_by(EventDelivery.status)
            ).all()
        )
    jobs = GaugeMetricFamily("falbridge_jobs", "Jobs in the database by status", labels=["status"])
    for status, count in by_status.items():  # every status, zero included: a series does not vanish
        jobs.add_metric([status], count)
    yield jobs
    yield GaugeMetricFamily(
        "falbridge_inbox_backlog", "Verified fal callbacks stored and not yet applied", value=inbox or 0
    )
    backlog = GaugeMetricFamily(
        "falbridge_outbox_backlog", "Outgoing event deliveries not yet settled", labels=["status"]
    )
    for status in _OUTBOX_OPEN:
        backlog.add_metric([status], outbox.get(status, 0))
    yield backlog
