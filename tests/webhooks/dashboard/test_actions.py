"""The job page's actions, each a POST with the session's CSRF token answered 303 back to
the job page with a flash message: cancel, replay an event, re-apply a delivery."""

from __future__ import annotations

import json
import re

import pytest
from sqlalchemy import select, update

from falbridge import config
from falbridge.models import subscriptions
from falbridge.models.db import transaction
from falbridge.models.inbox import store_verified
from falbridge.models.jobs import get_job
from falbridge.models.tables import EventDelivery, JobEvent, WebhookDelivery
from tests.webhooks.dashboard.helpers import EVF_SAM, completed, csrf_of, log_in, make_job


@pytest.fixture
def browser(client):
    log_in(client)
    return client


def act(browser, path: str, job_id) -> tuple[object, str]:
    """POST the action with the token from the job page, then follow the 303."""
    token = csrf_of(browser.get(f"/dashboard/jobs/{job_id}").text)
    answer = browser.post(path, data={"csrf_token": token})
    assert answer.status_code == 303, answer.text[:300]
    assert answer.headers["Location"] == f"/dashboard/jobs/{job_id}"
    page = browser.get(answer.headers["Location"]).text
    return answer, " ".join(re.findall(r'data-testid="flash" role="status">([^<]*)<', page))


def status_of(job_id) -> str:
    with transaction() as s:
        job = get_job(s, job_id)
        assert job is not None
        return job.status


def test_cancel_a_pending_job_then_again(browser):
    job_id = make_job(EVF_SAM)
    assert 'data-testid="cancel-job"' in browser.get(f"/dashboard/jobs/{job_id}").text

    _, flash = act(browser, f"/dashboard/jobs/{job_id}/cancel", job_id)
    assert flash == "cancelled: the job had not reached fal"
    assert status_of(job_id) == "cancelled"

    _, flash = act(browser, f"/dashboard/jobs/{job_id}/cancel", job_id)
    assert flash == "not cancelled: the job is already cancelled"


def test_replay_an_event_to_the_subscriptions_that_want_it(sandbox, browser):
    job_id = make_job(EVF_SAM)
    completed(job_id, {"image": None})
    with transaction() as s:
        subscriptions.create(s, config.current(), "https://hooks.example.test/in", ["job.completed"], None)
        done = s.scalar(select(JobEvent).where(JobEvent.job_id == job_id, JobEvent.to_status == "completed"))
        assert done is not None
        event_id = done.id

    _, flash = act(browser, f"/dashboard/jobs/{job_id}/events/{event_id}/replay", job_id)

    assert flash == f"event {event_id} replayed: 1 deliveries queued"
    page = browser.get(f"/dashboard/jobs/{job_id}").text
    events = page[page.index('data-testid="events"') :]
    assert 'data-testid="event-delivery" data-status="pending"' in events
    with transaction() as s:
        assert s.scalar(select(EventDelivery.event_id)) == event_id


def test_replay_refuses_an_event_of_another_job(browser):
    job_id, other = make_job(EVF_SAM), make_job(EVF_SAM)
    with transaction() as s:
        foreign = s.scalar(select(JobEvent.id).where(JobEvent.job_id == other))
    token = csrf_of(browser.get(f"/dashboard/jobs/{job_id}").text)
    answer = browser.post(f"/dashboard/jobs/{job_id}/events/{foreign}/replay", data={"csrf_token": token})
    assert answer.status_code == 404 and "has no event" in answer.text
    for bad in ("0", "x", "9" * 30):
        assert (
            browser.post(
                f"/dashboard/jobs/{job_id}/events/{bad}/replay", data={"csrf_token": token}
            ).status_code
            == 404
        )


def test_reapply_a_stored_delivery_then_again(browser):
    job_id = make_job(EVF_SAM, status="submitted", request_id="req-reapply-1")
    body = json.dumps({"request_id": "req-reapply-1", "status": "OK", "payload": {"image": None}}).encode()
    with transaction() as s:
        stored = store_verified(s, request_id="req-reapply-1", body=body, headers={})
        s.execute(
            update(WebhookDelivery).where(WebhookDelivery.id == stored.delivery_id).values(job_id=job_id)
        )
    page = browser.get(f"/dashboard/jobs/{job_id}").text
    assert f'data-testid="delivery" data-delivery-id="{stored.delivery_id}"' in page

    _, flash = act(browser, f"/dashboard/jobs/{job_id}/deliveries/{stored.delivery_id}/reapply", job_id)
    assert flash == f"delivery {stored.delivery_id} re-applied: applied"
    assert status_of(job_id) == "completed"

    _, flash = act(browser, f"/dashboard/jobs/{job_id}/deliveries/{stored.delivery_id}/reapply", job_id)
    assert flash == f"delivery {stored.delivery_id} re-applied: already_processed"


def test_reapply_refuses_a_delivery_of_another_job(browser):
    job_id = make_job(EVF_SAM)
    with transaction() as s:
        stored = store_verified(s, request_id="req-elsewhere", body=b"{}", headers={})
    token = csrf_of(browser.get(f"/dashboard/jobs/{job_id}").text)
    answer = browser.post(
        f"/dashboard/jobs/{job_id}/deliveries/{stored.delivery_id}/reapply", data={"csrf_token": token}
    )
    assert answer.status_code == 404
    with transaction() as s:
        row = s.get(WebhookDelivery, stored.delivery_id)
        assert row is not None and row.processed_at is None
