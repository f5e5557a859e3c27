"""A callback binds to a job by our URL only with the token falbridge put in that URL:
fal's signature covers its request id, not our query string."""

from __future__ import annotations

from sqlalchemy import select

from falbridge.models.db import transaction
from falbridge.models.jobs import create_job
from falbridge.models.tables import Job, WebhookDelivery
from falbridge.worker.fal import QueueClient
from falbridge.worker.webhook_url import proves, webhook_url
from tests.plugins.pipeline import TEST_FAL_KEY
from tests.plugins.waiting import poll_until

OLD_KEY, NEW_KEY = "o" * 43, "n" * 43


def _pending_victim():
    # Pending, no request id yet: as while its submit waits out a 429 backoff.
    with transaction() as s:
        job, _ = create_job(s, "fal-ai/some/model", {"mine": True})
    return job


def _foreign_callback(pipeline, query: str) -> WebhookDelivery:
    """A request of someone else's, made at fal (the sandbox), whose signed callback comes
    to our receiver with `query`; returns the delivery once a worker has applied it."""
    with QueueClient(pipeline.sandbox.url, TEST_FAL_KEY) as client:
        client.submit(
            "fal-ai/some/model", {"stolen": True}, webhook_url=f"{pipeline.receiver_url}/webhooks/fal?{query}"
        )
    pipeline.sandbox.wait_idle(timeout=10)

    def applied() -> list[WebhookDelivery]:
        with transaction() as s:
            return list(s.scalars(select(WebhookDelivery).where(WebhookDelivery.processed_at.is_not(None))))

    [delivery] = poll_until(applied, lambda found: len(found) == 1, timeout=10)
    return delivery


def _untouched(job_id) -> None:
    with transaction() as s:
        job = s.get(Job, job_id)
        assert (job.status, job.request_id, job.result, job.webhook_count) == ("pending", None, None, 0)


def test_a_signed_callback_for_a_foreign_request_cannot_take_a_job_by_its_id(pipeline):
    victim = _pending_victim()
    delivery = _foreign_callback(pipeline, f"job={victim.id}")
    assert delivery.verified and delivery.outcome == "unknown_job" and delivery.job_id is None
    assert "without a valid token" in delivery.processing_error
    _untouched(victim.id)


def test_nor_with_a_token_made_for_another_job(pipeline):
    victim, other = _pending_victim(), _pending_victim()
    token = webhook_url(other.id).rsplit("token=", 1)[1]
    delivery = _foreign_callback(pipeline, f"job={victim.id}&token={token}")
    assert delivery.outcome == "unknown_job"
    _untouched(victim.id)


def _token(job_id: str) -> str:
    return webhook_url(job_id).rsplit("token=", 1)[1]


def test_a_token_proves_its_own_job_only(monkeypatch):
    monkeypatch.setenv("FALBRIDGE_SECRET_KEY", OLD_KEY)
    job_id = "0d5e1f7a-7c1b-4c5e-9a3b-1f2e3d4c5b6a"
    token = _token(job_id)
    assert proves(job_id, token) and not proves(job_id, token[:-1]) and not proves(job_id, None)
    assert not proves("1d5e1f7a-7c1b-4c5e-9a3b-1f2e3d4c5b6a", token) and not proves(job_id, "é" + token)


def test_a_rotation_keeps_the_old_urls_valid_until_the_old_key_goes(monkeypatch):
    job_id = "0d5e1f7a-7c1b-4c5e-9a3b-1f2e3d4c5b6a"
    monkeypatch.setenv("FALBRIDGE_SECRET_KEY", OLD_KEY)
    handed_to_fal = _token(job_id)
    monkeypatch.setenv("FALBRIDGE_SECRET_KEY", f"{NEW_KEY},{OLD_KEY}")
    assert proves(job_id, handed_to_fal) and _token(job_id) != handed_to_fal
    monkeypatch.setenv("FALBRIDGE_SECRET_KEY", NEW_KEY)
    assert not proves(job_id, handed_to_fal)
