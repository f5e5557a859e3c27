"""Several OS processes hit the same job at the same instant (spawned, each with its own
engine and connections, as separate workers and receivers would be)."""

from __future__ import annotations

import json
import multiprocessing
import uuid

from sqlalchemy import func, select

from falbridge import config
from falbridge.models.db import transaction
from falbridge.models.inbox import store_verified
from falbridge.models.jobs import create_job, lock_job, transition
from falbridge.models.states import EventSource, JobStatus
from falbridge.models.tables import Job, JobEvent, ResultFile, WebhookDelivery
from falbridge.worker.apply.delivery import apply_delivery

CTX = multiprocessing.get_context("spawn")


def _run_all(target, args_list):
    barrier = CTX.Barrier(len(args_list))
    results = CTX.Queue()
    procs = [CTX.Process(target=target, args=(barrier, results, *args)) for args in args_list]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0, f"worker process exited with {p.exitcode}"
    return [results.get(timeout=5) for _ in procs]


def _apply_delivery(barrier, results, db_url, delivery_id):
    import os

    os.environ["DATABASE_URL"] = db_url
    config.use(None)
    barrier.wait()
    results.put(apply_delivery(delivery_id).outcome.value)


def _store_same_callback(barrier, results, db_url, body):
    import os

    os.environ["DATABASE_URL"] = db_url
    config.use(None)
    barrier.wait()
    with transaction() as s:
        stored = store_verified(s, request_id="req-dup", body=body, headers={})
    results.put(stored.duplicate)


def _move(barrier, results, db_url, job_id, target):
    import os

    os.environ["DATABASE_URL"] = db_url
    config.use(None)
    barrier.wait()
    applied = 0
    for _ in range(20):
        with transaction() as s:
            applied += transition(s, lock_job(s, uuid.UUID(job_id)), JobStatus(target), EventSource.POLL)
    results.put(applied)


def _body(i: int) -> bytes:
    if i % 2:
        return json.dumps(
            {
                "request_id": "req-1",
                "status": "ERROR",
                "error": "Invalid status code: 500",
                "payload": {"detail": f"boom {i}", "error_type": "runner_server_error"},
            }
        ).encode()
    return json.dumps(
        {
            "request_id": "req-1",
            "status": "OK",
            "payload": {
                "image": {"url": f"https://cdn.example/{i}.png", "content_type": "image/png", "file_size": i}
            },
        }
    ).encode()


def test_competing_callbacks_from_six_processes_apply_exactly_once(db_url):
    with transaction() as s:
        job, _ = create_job(s, "fal-ai/evf-sam", {"prompt": "cat"})
        job.request_id, job.status = "req-1", "submitted"
        ids = [store_verified(s, request_id="req-1", body=_body(i), headers={}).delivery_id for i in range(6)]
    outcomes = _run_all(_apply_delivery, [(db_url, d) for d in ids])
    assert sorted(outcomes) == ["applied"] + ["duplicate"] * 5
    with transaction() as s:
        final = s.get(Job, job.id)
        terminal = s.scalars(
            select(JobEvent).where(JobEvent.job_id == job.id, JobEvent.to_status.in_(["completed", "failed"]))
        ).all()
        files = s.scalar(select(func.count()).select_from(ResultFile).where(ResultFile.job_id == job.id))
        winner = s.get(WebhookDelivery, terminal[0].detail["delivery_id"])
    assert len(terminal) == 1 and terminal[0].to_status == final.status
    assert winner.outcome == "applied"
    assert files == (1 if final.status == "completed" else 0)
    assert final.webhook_count == 6


def test_one_callback_stored_by_eight_receivers_is_one_row(db_url):
    body = _body(0)
    duplicates = _run_all(_store_same_callback, [(db_url, body)] * 8)
    assert sorted(duplicates) == [False] + [True] * 7
    with transaction() as s:
        [row] = s.scalars(select(WebhookDelivery)).all()
    assert row.redeliveries == 7


def test_late_in_progress_polls_never_overwrite_the_terminal_state(db_url):
    with transaction() as s:
        job, _ = create_job(s, "fal-ai/x/y", {})
        job.status = "submitted"
    moves = [(db_url, str(job.id), "in_progress")] * 3 + [(db_url, str(job.id), "completed")]
    applied = _run_all(_move, moves)
    with transaction() as s:
        events = [
            e.to_status
            for e in s.scalars(select(JobEvent).where(JobEvent.job_id == job.id).order_by(JobEvent.id))
        ]
        assert s.get(Job, job.id).status == "completed"
    # Either an in_progress poll got in first or the completion did; never anything after it.
    assert events in (["pending", "in_progress", "completed"], ["pending", "completed"])
    assert sum(applied) == len(events) - 1
