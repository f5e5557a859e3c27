"""The receiver across a database reconnect: PostgreSQL terminates every connection of
ours between two callbacks (a failover, a restart, an idle-connection killer). The next
callback must still be stored, or answered with a 5xx that fal retries; never lost, and
never a 2xx for a delivery that was not stored."""

from __future__ import annotations

import psycopg
import pytest
from sqlalchemy import func, make_url, select

from falbridge.models.db import transaction
from falbridge.models.jobs import create_job
from falbridge.models.tables import WebhookDelivery
from falbridge.worker.fal import QueueClient
from falbridge.worker.submit import record_submission
from falbridge.worker.webhook_url import webhook_url
from tests.plugins.pipeline import TEST_FAL_KEY


def _terminate_our_connections(db_url: str) -> int:
    """pg_terminate_backend on every other connection to the test database; how many."""
    url = make_url(db_url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchone()
    return int(row[0]) if row else 0


def _submit_and_wait(pipeline, n: int):
    with transaction() as s:
        job, _ = create_job(s, "fal-ai/some/model", {"n": n})
        job_id = job.id
    with QueueClient(pipeline.sandbox.url, TEST_FAL_KEY) as client:
        # Our real webhook URL, token and all: a callback that beats record_submission
        # still names its job.
        sub = client.submit("fal-ai/some/model", {"n": n}, webhook_url=webhook_url(job_id))
    record_submission(job_id, sub)
    return job_id, sub.request_id


def test_callbacks_after_the_database_dropped_every_connection_are_stored(pipeline, db_url):
    if not db_url.startswith("postgresql"):
        pytest.skip("SQLite has no connections to drop")
    job_id, _ = _submit_and_wait(pipeline, 0)
    pipeline.wait_terminal(job_id)  # the receiver's and the worker's pools hold connections now
    for n in range(1, 4):
        assert _terminate_our_connections(db_url) >= 1
        job_id, request_id = _submit_and_wait(pipeline, n)
        pipeline.sandbox.wait_idle(timeout=30)
        [truth] = [r for r in pipeline.sandbox.ground_truth()["requests"] if r["request_id"] == request_id]
        statuses = [d["http_status"] for d in truth["deliveries"]]
        # Answered 2xx exactly once, at the end; anything before it a retryable 5xx.
        assert statuses[-1] == 200 and all(s is not None and s >= 500 for s in statuses[:-1]), statuses
        with transaction() as s:
            stored = s.scalar(
                select(func.count())
                .select_from(WebhookDelivery)
                .where(WebhookDelivery.request_id == request_id)
            )
        assert stored == 1
        # And applied, by the drain the receiver woke across the same reconnect.
        [job] = pipeline.wait_terminal(job_id, timeout=30)
        assert job.status == "completed"
