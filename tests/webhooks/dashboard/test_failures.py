"""The failures view: failed jobs, outcome-unknown jobs, exhausted events, rejected
webhooks counted by reason."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from falbridge import config
from falbridge.models import subscriptions
from falbridge.models.db import transaction
from falbridge.models.event_deliveries import replay
from falbridge.models.inbox import store_rejected
from falbridge.models.tables import EventDelivery, JobEvent
from tests.webhooks.dashboard.helpers import EVF_SAM, failed, log_in, make_job


@pytest.fixture
def browser(client):
    log_in(client)
    return client


def section(page: str, testid: str) -> str:
    start = page.index(f'data-testid="{testid}"')
    return page[start : page.index("</section>", start)]


def test_failures_shows_each_kind_of_trouble(browser):
    broken = make_job(EVF_SAM, external_id="broken-1")
    failed(broken, error="model crashed", error_type="fal_error")
    lost = make_job(EVF_SAM, status="outcome_unknown")
    fine = make_job(EVF_SAM, status="completed")
    with transaction() as s:
        sub, _ = subscriptions.create(
            s, config.current(), "https://hooks.example.test/f", ["job.failed"], None
        )
        event_id = s.scalar(
            select(JobEvent.id).where(JobEvent.job_id == broken, JobEvent.to_status == "failed")
        )
        assert event_id is not None
        [delivery_id] = replay(s, event_id, [sub.id])
        delivery = s.get(EventDelivery, delivery_id)
        assert delivery is not None
        delivery.status, delivery.attempts, delivery.last_status_code = "exhausted", 8, 500
        for code in ("bad_signature", "bad_signature", "stale_timestamp"):
            store_rejected(s, request_id=None, code=code, reason=code, headers={}, body=b"{}")

    page = browser.get("/dashboard/failures").text

    assert str(broken) in section(page, "failed-jobs-section") and "model crashed" in page
    assert str(lost) in section(page, "unknown-jobs-section")
    assert str(fine) not in page
    exhausted = section(page, "exhausted-events")
    assert f'data-delivery-id="{delivery_id}"' in exhausted and f"evt_{event_id}" in exhausted
    rejected = section(page, "rejected-webhooks")
    assert 'data-reason="bad_signature">bad_signature: <b>2</b>' in rejected
    assert 'data-reason="stale_timestamp">stale_timestamp: <b>1</b>' in rejected
    assert rejected.index("bad_signature") < rejected.index("stale_timestamp")


def test_an_empty_failures_view_says_so(browser):
    page = browser.get("/dashboard/failures")
    assert page.status_code == 200 and "none kept" in page.text
