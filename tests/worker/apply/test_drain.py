"""Draining the inbox (worker/apply/drain.py), straight against the database: deliveries
stored as the receiver stores them, drained in batches, read back."""

from __future__ import annotations

import json
import multiprocessing
import uuid
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import select, text

from falbridge import config
from falbridge.models.db import transaction
from falbridge.models.inbox import store_rejected, store_verified
from falbridge.models.jobs import create_job, lock_jobs
from falbridge.models.tables import Job, JobEvent, WebhookDelivery
from falbridge.worker.apply.drain import drain
from falbridge.worker.followup import FollowUp, Work
from falbridge.worker.webhook_url import webhook_url
from tests.plugins.db import statements_sent

CTX = multiprocessing.get_context("spawn")


@pytest.fixture(autouse=True)
def secret_key(db_url, monkeypatch):
    monkeypatch.setenv("FALBRIDGE_SECRET_KEY", "drain-test-secret-key-" + "k" * 24)


def _jobs(count: int, prefix: str = "req") -> list[uuid.UUID]:
    with transaction() as s:
        jobs = [create_job(s, "fal-ai/evf-sam", {"n": n})[0] for n in range(count)]
        for n, job in enumerate(jobs):
            job.status, job.request_id = "submitted", f"{prefix}-{n}"
        s.flush()
        return [job.id for job in jobs]


def _callback(request_id: str, n: int = 0, **fields: object) -> bytes:
    doc = {"request_id": request_id, "status": "OK", "payload": {"n": n}, **fields}
    return json.dumps(doc).encode()


def _store(*bodies: bytes) -> list[int]:
    with transaction() as s:
        return [
            store_verified(s, request_id=json.loads(body)["request_id"], body=body, headers={}).delivery_id
            for body in bodies
        ]


def _deliveries() -> dict[int, WebhookDelivery]:
    with transaction() as s:
        rows = s.scalars(select(WebhookDelivery)).all()
        for row in rows:
            s.expunge(row)
        return {row.id: row for row in rows}


def _completions(job_id: uuid.UUID) -> list[dict | None]:
    with transaction() as s:
        events = s.scalars(
            select(JobEvent).where(JobEvent.job_id == job_id, JobEvent.to_status == "completed")
        ).all()
        return [event.detail for event in events]


def test_a_drain_applies_everything_stored_a_batch_per_transaction_oldest_first():
    jobs = _jobs(5)
    ids = _store(*(_callback(f"req-{n}", n) for n in range(5)))
    drained = drain(batch_size=2, max_batches=10)
    assert (drained.outcomes, drained.batches, drained.more) == ({"applied": 5}, 3, False)
    rows = _deliveries()
    assert all(rows[i].outcome == "applied" and rows[i].processed_at is not None for i in ids)
    assert [rows[i].job_id for i in ids] == jobs
    # Oldest first, and one commit per batch: the first two share their processed_at.
    stamps = [rows[i].processed_at for i in ids]
    assert stamps[0] == stamps[1] < stamps[2] == stamps[3] < stamps[4]
    for n, job_id in enumerate(jobs):
        assert _completions(job_id) == [{"delivery_id": ids[n]}]


def test_draining_again_applies_nothing_twice():
    [job_id] = _jobs(1)
    _store(_callback("req-0"))
    assert drain(batch_size=10, max_batches=10).outcomes == {"applied": 1}
    again = drain(batch_size=10, max_batches=10)
    assert (again.applied, again.batches) == (0, 1)
    assert len(_completions(job_id)) == 1


def test_rejected_deliveries_are_never_drained():
    with transaction() as s:
        store_rejected(s, request_id="req-x", code="bad_signature", reason="no", headers={}, body=b"{}")
    assert drain(batch_size=10, max_batches=10).applied == 0


def test_a_budget_of_batches_stops_the_drain_and_says_there_may_be_more():
    _jobs(3)
    _store(*(_callback(f"req-{n}", n) for n in range(3)))
    first = drain(batch_size=1, max_batches=2)
    assert (first.applied, first.more) == (2, True)
    rest = drain(batch_size=1, max_batches=2)
    assert (rest.applied, rest.more) == (1, False)


def test_two_callbacks_for_one_job_in_one_batch_apply_once_and_count_twice():
    [job_id] = _jobs(1)
    first, second = _store(_callback("req-0", 1), _callback("req-0", 2))
    assert drain(batch_size=10, max_batches=1).outcomes == {"applied": 1, "duplicate": 1}
    assert _completions(job_id) == [{"delivery_id": first}]
    with transaction() as s:
        job = s.get(Job, job_id)
        assert (job.webhook_count, job.result) == (2, {"n": 1})
    assert _deliveries()[second].outcome == "duplicate"


def _unbound_job() -> tuple[uuid.UUID, dict[str, str]]:
    """A submitted job whose fal answer was never recorded (no request id yet), and the
    headers the receiver keeps from its webhook URL (the job id and the token proving it)."""
    with transaction() as s:
        job = create_job(s, "fal-ai/evf-sam", {"n": 0})[0]
        job.status = "submitted"
        job_id = job.id
    query = parse_qs(urlsplit(webhook_url(job_id)).query)
    return job_id, {"query_job_id": query["job"][0], "query_token": query["token"][0]}


def test_a_job_bound_by_its_url_in_a_batch_is_found_by_request_id_later_in_the_same_batch():
    """The batch's locks are taken before anything applies: the second callback's request
    id is bound only by the first, so it is looked up after that binding (not missed)."""
    job_id, headers = _unbound_job()
    with transaction() as s:
        for n in (1, 2):
            store_verified(s, request_id="req-late", body=_callback("req-late", n), headers=headers)
    assert drain(batch_size=10, max_batches=1).outcomes == {"applied": 1, "duplicate": 1}
    with transaction() as s:
        job = s.get(Job, job_id)
        assert (job.request_id, job.webhook_count, job.result) == ("req-late", 2, {"n": 1})


def test_a_batch_reads_its_jobs_with_one_statement_those_its_urls_prove_included():
    """No locking query per delivery: the batch's jobs, bound or proven by their URLs,
    are read (and on PostgreSQL locked) once, up front."""
    _jobs(3)
    _, headers = _unbound_job()
    _store(_callback("req-0"), _callback("req-1"), _callback("req-2"))
    with transaction() as s:
        store_verified(s, request_id="req-9", body=_callback("req-9"), headers=headers)
    with statements_sent() as statements:
        assert drain(batch_size=10, max_batches=1).outcomes == {"applied": 4}
    reads = [sql for sql in statements if sql.startswith("SELECT") and " FROM jobs" in sql]
    assert len(reads) == 1, reads


def test_the_jobs_of_a_batch_are_locked_in_one_statement_in_id_order():
    ids = _jobs(3)
    with transaction() as s:
        assert lock_jobs(s, []) == []
        locked = lock_jobs(s, ["req-2", "req-0", "req-2", "unknown", "req-1"])
        assert [job.id for job in locked] == sorted(ids)


def test_a_callback_without_its_payload_asks_for_a_fetch_after_the_drain():
    [job_id] = _jobs(1)
    _store(_callback("req-0", payload=None, payload_error="too big"))
    drained = drain(batch_size=10, max_batches=1)
    assert drained.follow_ups == [FollowUp(Work.FETCH_RESULT, str(job_id))]


@pytest.fixture
def refuse_updates_of_job(db_url):
    """A trigger that makes the database refuse any change to one job's row: a row that
    cannot be written, whatever the reason in production (a constraint, a lock timeout).
    Dropped after the test: the database outlives it."""
    yield lambda request_id: _create_refusal(request_id, db_url)
    with transaction() as s:
        s.execute(
            text(
                "DROP TRIGGER IF EXISTS refuse_job" + (" ON jobs" if db_url.startswith("postgresql") else "")
            )
        )
        if db_url.startswith("postgresql"):
            s.execute(text("DROP FUNCTION IF EXISTS refuse_job()"))


def _create_refusal(request_id: str, db_url: str) -> None:
    with transaction() as s:
        if db_url.startswith("postgresql"):
            s.execute(
                text(
                    "CREATE FUNCTION refuse_job() RETURNS trigger LANGUAGE plpgsql AS "
                    "$$ BEGIN RAISE EXCEPTION 'refused'; END $$"
                )
            )
            s.execute(
                text(
                    "CREATE TRIGGER refuse_job BEFORE UPDATE ON jobs FOR EACH ROW "
                    f"WHEN (OLD.request_id = '{request_id}') EXECUTE FUNCTION refuse_job()"
                )
            )
        else:
            s.execute(
                text(
                    "CREATE TRIGGER refuse_job BEFORE UPDATE ON jobs "
                    f"WHEN OLD.request_id = '{request_id}' BEGIN SELECT RAISE(ABORT, 'refused'); END"
                )
            )


def test_a_delivery_that_cannot_be_applied_is_passed_over_and_the_rest_applied(refuse_updates_of_job):
    """Applying one delivery raises every time: the batch it spoils is applied one by one,
    and the drain moves on past it, leaving it to the sweeper."""
    jobs = _jobs(4)
    ids = _store(_callback("req-0"), _callback("req-1"), _callback("req-2"), _callback("req-3"))
    refuse_updates_of_job("req-1")
    drained = drain(batch_size=2, max_batches=10)
    rows = _deliveries()
    for n in (0, 2, 3):
        assert rows[ids[n]].outcome == "applied" and len(_completions(jobs[n])) == 1
    assert drained.passed_over == {ids[1]} and drained.outcomes == {"applied": 3}
    assert rows[ids[1]].processed_at is None  # left to the sweeper
    assert _completions(jobs[1]) == []


def test_a_callback_holding_a_nul_is_applied_as_one_whose_result_must_be_fetched(db_url):
    """PostgreSQL stores no NUL: the payload is not kept, the result is fetched instead."""
    [job_id] = _jobs(1)
    [delivery_id] = _store(_callback("req-0", payload={"text": "a\u0000b"}))
    drained = drain(batch_size=10, max_batches=1)
    assert drained.passed_over == set() and drained.outcomes == {"result_fetch_needed": 1}
    assert drained.follow_ups == [FollowUp(Work.FETCH_RESULT, str(job_id))]
    assert _deliveries()[delivery_id].processed_at is not None


def _drain_in_process(barrier, results, db_url, batch_size):
    import os

    os.environ["DATABASE_URL"] = db_url
    os.environ["FALBRIDGE_SECRET_KEY"] = "drain-test-secret-key-" + "k" * 24
    config.use(None)
    barrier.wait()
    drained = drain(batch_size=batch_size, max_batches=1000)
    results.put(dict(drained.outcomes))


def test_concurrent_drainers_apply_each_delivery_exactly_once(db_url):
    """Four processes drain 240 deliveries at once: 200 jobs' callbacks, 40 of them sent
    twice with other bodies (fal's retries of one request never differ, but a second
    callback for a finished job must still count as a duplicate)."""
    jobs = _jobs(200)
    bodies = [_callback(f"req-{n}", n) for n in range(200)]
    bodies += [_callback(f"req-{n}", 1000 + n) for n in range(0, 200, 5)]
    _store(*bodies)
    barrier = CTX.Barrier(4)
    results = CTX.Queue()
    procs = [CTX.Process(target=_drain_in_process, args=(barrier, results, db_url, 7)) for _ in range(4)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(120)
        assert proc.exitcode == 0
    totals: dict[str, int] = {}
    for _ in procs:
        for outcome, count in results.get(timeout=5).items():
            totals[outcome] = totals.get(outcome, 0) + count
    assert totals == {"applied": 200, "duplicate": 40}
    rows = _deliveries()
    assert all(row.processed_at is not None for row in rows.values())
    for job_id in jobs:
        assert len(_completions(job_id)) == 1
