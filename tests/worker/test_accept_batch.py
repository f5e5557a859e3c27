"""Accepting many jobs at once: one result per item in order, the good ones stored in one
transaction, a bad one refused alone as POST /api/jobs would refuse it, external ids
honoured within a batch and across batches racing for the same keys."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import event, func, select

from falbridge.models.db import get_engine, transaction
from falbridge.models.tables import Job
from falbridge.worker import followup
from falbridge.worker.accept import Accepted, SubmitItem
from falbridge.worker.accept_batch import MAX_BATCH, Refusal, accept_batch
from falbridge.worker.notify.job_callbacks import JobCallbacks

SOME = "fal-ai/some/model"
EVF = "fal-ai/evf-sam"


def _jobs() -> int:
    with transaction() as s:
        return s.scalar(select(func.count()).select_from(Job))


def test_each_item_gets_its_own_result_in_order(db_url):
    results = accept_batch(
        [
            SubmitItem(SOME, {"n": 1}),
            SubmitItem(EVF, {"prompt": "cat"}),  # no image_url
            SubmitItem(SOME, {"n": 2}, options={"priority": "low"}),
            SubmitItem("not-an-endpoint", {}),
            SubmitItem(SOME, {"n": 3}, options={"priority": "urgent"}),
            SubmitItem(SOME, {"n": 4}, callbacks=JobCallbacks(notify_url="http://127.0.0.1:9/")),
        ]
    )
    kinds = [r.code if isinstance(r, Refusal) else "ok" for r in results]
    refused = ["invalid_input", "ok", "invalid_endpoint_id", "invalid_options", "invalid_callback"]
    assert kinds == ["ok", *refused]
    assert [r.status for r in results if isinstance(r, Refusal)] == [422, 422, 422, 422]
    first, third = results[0], results[2]
    assert isinstance(first, Accepted) and isinstance(third, Accepted)
    assert first.created and first.job.input == {"n": 1} and third.job.priority == "low"
    assert first.follow_ups == (followup.submit_pending(),)  # a drain, not a task a job
    assert _jobs() == 2


def test_the_good_items_are_stored_in_one_transaction(db_url):
    commits: list[object] = []

    def counted(connection: object) -> None:
        commits.append(connection)

    event.listen(get_engine(), "commit", counted)
    try:
        results = accept_batch([SubmitItem(SOME, {"n": n}) for n in range(50)])
    finally:
        event.remove(get_engine(), "commit", counted)
    assert all(isinstance(r, Accepted) and r.created for r in results)
    assert len(commits) == 1 and _jobs() == 50


def test_an_external_id_repeated_finds_its_job_and_a_changed_one_is_a_conflict(db_url):
    [before] = accept_batch([SubmitItem(SOME, {"n": 1}, external_id="k-1")])
    assert isinstance(before, Accepted)
    again, inside, twice, changed = accept_batch(
        [
            SubmitItem(SOME, {"n": 1}, external_id="k-1"),  # from an earlier batch
            SubmitItem(SOME, {"n": 2}, external_id="k-2"),
            SubmitItem(SOME, {"n": 2}, external_id="k-2"),  # twice in this one
            SubmitItem(SOME, {"n": 3}, external_id="k-2"),
        ]
    )
    assert isinstance(again, Accepted) and not again.created and again.job.id == before.job.id
    assert again.follow_ups == ()
    assert isinstance(inside, Accepted) and inside.created
    assert isinstance(twice, Accepted) and not twice.created and twice.job.id == inside.job.id
    assert isinstance(changed, Refusal) and (changed.status, changed.code) == (409, "external_id_conflict")
    assert changed.details == {"job_id": str(inside.job.id)}
    assert _jobs() == 2


def test_more_than_the_limit_is_refused_whole(db_url):
    with pytest.raises(ValueError, match=f"at most {MAX_BATCH}"):
        accept_batch([SubmitItem(SOME, {})] * (MAX_BATCH + 1))
    assert _jobs() == 0


def test_batches_racing_for_the_same_keys_make_one_job_each(db_url):
    """Eight batches at once, each naming the same 40 keys in its own order: one job per
    key, every batch sees those jobs, and none deadlocks (inserts go in key order)."""
    keys = [f"race-{n:02d}" for n in range(40)]
    barrier = threading.Barrier(8)
    seen: list[dict[str, str]] = []
    errors: list[BaseException] = []

    def one_batch(seed: int) -> None:
        order = keys[seed * 5 :] + keys[: seed * 5]
        try:
            barrier.wait()
            results = accept_batch([SubmitItem(SOME, {"key": k}, external_id=k) for k in order])
            seen.append({k: str(r.job.id) for k, r in zip(order, results, strict=True)})  # type: ignore[union-attr]
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=one_batch, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == [] and len(seen) == 8
    assert all(batch == seen[0] for batch in seen)
    assert _jobs() == 40
