"""Waking the inbox drain (worker/inbox_wakeup.py, worker/tasks.py): one published drain
for a stream of deliveries, and a delivery whose drain was lost still applied."""

from __future__ import annotations

import redis
from sqlalchemy import select

from falbridge.models.db import transaction
from falbridge.models.jobs import create_job
from falbridge.models.tables import Job, WebhookDelivery
from falbridge.worker import inbox_wakeup, inline
from falbridge.worker.fal import QueueClient
from falbridge.worker.submit import record_submission
from falbridge.worker.sweep import sweep
from falbridge.worker.wake_flag import redis_py_url
from tests.plugins.pipeline import TEST_FAL_KEY
from tests.plugins.waiting import poll_until
from tests.worker.test_sweep import NOW


def test_the_flag_lets_one_wake_up_through_until_a_drain_starts(pipeline_env):
    inbox_wakeup.release_wake()
    assert inbox_wakeup.claim_wake() is True
    assert [inbox_wakeup.claim_wake() for _ in range(5)] == [False] * 5
    inbox_wakeup.release_wake()  # a drain started
    assert inbox_wakeup.claim_wake() is True
    inbox_wakeup.release_wake()


def test_a_lost_drain_holds_back_wake_ups_only_until_its_flag_expires(pipeline_env):
    inbox_wakeup.release_wake()
    assert inbox_wakeup.claim_wake() is True  # published, then lost: nobody clears it
    poll_until(inbox_wakeup.claim_wake, bool, timeout=inbox_wakeup.WAKE_TTL_S + 3)
    inbox_wakeup.release_wake()


def test_a_delivery_whose_drain_was_lost_is_applied_by_the_sweeper(pipeline, db_url):
    """A drain published and then lost, its flag still set: the receiver stores the
    callback, answers 200 and publishes nothing; the sweeper applies it."""
    flag = redis.Redis.from_url(redis_py_url(str(pipeline_broker_url())))
    flag.set(inbox_wakeup.FLAG.key, b"1", px=60_000)
    try:
        with transaction() as s:
            job, _ = create_job(s, "fal-ai/some/model", {"n": 4})
            job_id = job.id
        with QueueClient(pipeline.sandbox.url, TEST_FAL_KEY) as client:
            sub = client.submit(
                "fal-ai/some/model",
                {"n": 4},
                webhook_url=f"{pipeline.receiver_url}/webhooks/fal?job={job_id}",
            )
        record_submission(job_id, sub)
        pipeline.sandbox.wait_idle(timeout=10)
        [truth] = pipeline.sandbox.ground_truth()["requests"]
        assert [d["http_status"] for d in truth["deliveries"]] == [200]
        with transaction() as s:
            [delivery] = s.scalars(select(WebhookDelivery)).all()
            assert delivery.verified and delivery.processed_at is None
        assert sweep(inline.run, NOW).redriven_deliveries == 1
        with transaction() as s:
            assert s.get(Job, job_id).status == "completed"
    finally:
        flag.delete(inbox_wakeup.FLAG.key)
        flag.close()


def pipeline_broker_url() -> str:
    from falbridge.worker.celery_app import ensure_broker

    return str(ensure_broker().conf.broker_url)
