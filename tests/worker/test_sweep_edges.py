"""Where each of the sweeper's queries draws its lines (worker/sweep.py): the exact end of
every grace period, which result files count as recorded, the window the store re-drive
looks back over, and rows another transaction holds. `find_work` is given its clock, so a
row exactly at a boundary is placed there to the microsecond."""

from __future__ import annotations

import json
import threading
import uuid
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select, update

from falbridge.config import StorageConfig, SweepConfig
from falbridge.models.db import transaction
from falbridge.models.inbox import store_verified
from falbridge.models.jobs import create_job
from falbridge.models.tables import Job, ResultFile, StoredFile, WebhookDelivery, utcnow
from falbridge.worker.followup import Work
from falbridge.worker.sweep import STORE_REDRIVE_WITHIN, find_work

GRACE_S = 60
GRACE = timedelta(seconds=GRACE_S)
SETTINGS = SweepConfig(
    pending_grace_s=GRACE_S,
    delivery_grace_s=GRACE_S,
    silent_after_s=GRACE_S,
    poll_every_s=GRACE_S,
    outcome_unknown_grace_s=GRACE_S,
)
STORE_ALL = StorageConfig(store="all", grace_s=GRACE_S)
TICK = timedelta(microseconds=1)
LONG_AGO = timedelta(hours=1)

pytestmark = pytest.mark.usefixtures("db_url")


def _job(touched_at: datetime, files: tuple[str, ...] = (), stored: tuple[str, ...] = (), **fields) -> str:
    """A job last touched at `touched_at`, with result files at `files` and stored records
    (recorded missing: what the sweep looks at is the record, not the bytes) at `stored`."""
    with transaction() as s:
        job, _ = create_job(s, fields.pop("endpoint_id", "fal-ai/some/model"), {"n": 1})
        job_id = job.id
        s.add_all(ResultFile(job_id=job_id, path=path, url=f"https://cdn.example/{path}") for path in files)
        s.add_all(
            StoredFile(
                job_id=job_id, path=path, fal_url="https://cdn.example/x", status="missing", reason="r"
            )
            for path in stored
        )
    with transaction() as s:
        s.execute(update(Job).where(Job.id == job_id).values(touched_at=touched_at, **fields))
    return str(job_id)


def _delivery(received_at: datetime, request_id: str) -> str:
    body = json.dumps({"request_id": request_id, "status": "OK", "payload": {}}).encode()
    with transaction() as s:
        stored = store_verified(s, request_id=request_id, body=body, headers={})
        s.get(WebhookDelivery, stored.delivery_id).received_at = received_at
        return str(stored.delivery_id)


def _targets(now: datetime, storage: StorageConfig = STORE_ALL) -> set[tuple[Work, str]]:
    return {(work.work, work.target) for work in find_work(SETTINGS, storage, now=now)}


# Each kind of job the sweep re-drives once its grace period is over, as (work, fields).
_DUE_AFTER_GRACE = [
    (Work.SUBMIT, {}),
    (Work.FETCH_RESULT, {"status": "submitted", "result_pending": True}),
    (Work.POLL, {"status": "submitted", "request_id": "req-{n}"}),
    (Work.RESUBMIT, {"status": "outcome_unknown"}),
    (Work.STORE_FILES, {"status": "completed", "files": ("out.png",)}),
]


def _named(fields: dict, name: str) -> dict:
    """`fields` with `{n}` in its strings (a request id is unique) filled in with `name`."""
    return {key: value.format(n=name) if isinstance(value, str) else value for key, value in fields.items()}


@pytest.mark.parametrize(("work", "fields"), _DUE_AFTER_GRACE, ids=[w.value for w, _ in _DUE_AFTER_GRACE])
def test_a_job_exactly_at_its_grace_is_not_due_and_one_microsecond_later_it_is(work, fields):
    now = utcnow()
    _job(now - GRACE, **_named(fields, "at"))
    past_grace = _job(now - GRACE - TICK, **_named(fields, "past"))
    assert _targets(now) == {(work, past_grace)}


def test_a_delivery_exactly_at_its_grace_is_not_redriven_and_one_microsecond_later_it_is():
    now = utcnow()
    _delivery(now - GRACE, "req-at")
    past = _delivery(now - GRACE - TICK, "req-past")
    assert _targets(now) == {(Work.APPLY_DELIVERY, past)}


def test_a_submit_lease_ending_exactly_now_still_holds():
    now = utcnow()
    _job(now - LONG_AGO, submit_lease_until=now)
    ended = _job(now - LONG_AGO, submit_lease_until=now - TICK)
    assert _targets(now) == {(Work.SUBMIT, ended)}


def test_a_job_polled_exactly_one_interval_ago_is_not_polled_again_yet():
    now = utcnow()
    silent = {"status": "submitted"}
    _job(now - LONG_AGO, request_id="req-at", last_polled_at=now - GRACE, **silent)
    past = _job(now - LONG_AGO, request_id="req-past", last_polled_at=now - GRACE - TICK, **silent)
    assert _targets(now) == {(Work.POLL, past)}


def test_the_store_redrive_looks_back_exactly_its_window():
    """Jobs touched more than STORE_REDRIVE_WITHIN ago are history the sweep no longer scans;
    the bound itself is outside, a microsecond inside is in."""
    now = utcnow()
    done = {"status": "completed", "files": ("out.png",)}
    inside = _job(now - STORE_REDRIVE_WITHIN + TICK, **done)
    _job(now - STORE_REDRIVE_WITHIN, **done)
    _job(now - STORE_REDRIVE_WITHIN - TICK, **done)
    _job(now - timedelta(days=1, hours=12), **done)
    assert _targets(now) == {(Work.STORE_FILES, inside)}


def test_a_file_counts_as_recorded_only_by_its_own_jobs_record_of_its_own_path():
    """Each unrecorded file is matched against the stored records of the same job and the
    same path: another job's record of that path, or this job's records of the paths on
    either side of it, leave it unrecorded."""
    now = utcnow()
    old = now - LONG_AGO
    between = _job(old, status="completed", files=("a.png", "b.png", "c.png"), stored=("a.png", "c.png"))
    first, second = sorted(
        [uuid.UUID(_job(old, status="completed", files=("out.png",))) for _ in range(2)]
    )  # ids in order: the one a lower id's record of the path must not cover
    with transaction() as s:
        s.add(StoredFile(job_id=second, path="out.png", fal_url="https://cdn.example/x", status="stored"))
    whole = _job(old, status="completed", files=("x.png",), stored=("x.png",))
    assert _targets(now) == {(Work.STORE_FILES, between), (Work.STORE_FILES, str(first))}
    assert whole not in {target for _, target in _targets(now)}


def test_neither_a_lower_nor_a_higher_job_id_stands_in_for_a_jobs_own():
    """The matching holds whichever way the ids sort: a record of the path by a job with a
    lower id does not cover a higher job's file, and an unrecorded file of a higher job does
    not make a lower, whole job look unrecorded (uuid4 ids would leave the order to chance)."""
    now = utcnow()
    low, mid, high = sorted(uuid.UUID(_job(now - LONG_AGO, status="completed")) for _ in range(3))
    with transaction() as s:
        s.add_all(
            ResultFile(job_id=j, path="p.png", url="https://cdn.example/p.png") for j in (low, mid, high)
        )
        s.add_all(
            StoredFile(job_id=j, path="p.png", fal_url="https://cdn.example/p.png", status="stored")
            for j in (low, high)
        )
    assert _targets(now) == {(Work.STORE_FILES, str(mid))}


def test_only_completed_jobs_have_their_files_redriven():
    """Statuses on both sides of "completed" in sort order, each with an unrecorded file."""
    now = utcnow()
    for status in ("cancelled", "failed", "in_progress"):
        _job(now - LONG_AGO, status=status, files=("out.png",), request_id=f"req-{status}")
    completed = _job(now - LONG_AGO, status="completed", files=("out.png",))
    stores = {target for work, target in _targets(now) if work is Work.STORE_FILES}
    assert stores == {completed}


def test_which_endpoints_have_their_files_redriven_is_the_store_setting():
    now = utcnow()
    mine = _job(now - LONG_AGO, status="completed", files=("out.png",), endpoint_id="fal-ai/mine")
    other = _job(now - LONG_AGO, status="completed", files=("out.png",), endpoint_id="fal-ai/other")
    assert _targets(now, StorageConfig(store="none", grace_s=GRACE_S)) == set()
    assert _targets(now, StorageConfig(store="fal-ai/mine", grace_s=GRACE_S)) == {(Work.STORE_FILES, mine)}
    later = now + 2 * GRACE  # the first re-drive marked `mine` touched
    assert _targets(later, STORE_ALL) == {(Work.STORE_FILES, mine), (Work.STORE_FILES, other)}


def test_rows_another_transaction_holds_are_skipped_not_waited_for(engine):
    """On PostgreSQL every query that claims jobs takes them FOR UPDATE SKIP LOCKED: a job a
    worker holds locked right now is being handled, and waiting for it would stall the whole
    sweep. One held and one free job of each kind. (SQLite has no row locks: its writers
    take turns.)"""
    if engine.dialect.name != "postgresql":
        pytest.skip("row locks are PostgreSQL's")
    now = utcnow()
    old = now - LONG_AGO
    held, free = [], {}
    for work, fields in _DUE_AFTER_GRACE:
        for role in ("held", "free"):
            job_id = _job(old, **_named(fields, role))
            if role == "held":
                held.append(uuid.UUID(job_id))
            else:
                free[job_id] = work
    found: list[set[tuple[Work, str]]] = []
    with engine.connect() as worker, worker.begin():
        worker.execute(select(Job.id).where(Job.id.in_(held)).with_for_update())
        sweeper = threading.Thread(target=lambda: found.append(_targets(now)), daemon=True)
        sweeper.start()
        sweeper.join(timeout=10)
        finished = not sweeper.is_alive()
    sweeper.join(timeout=10)
    assert finished, "the sweep waited for a locked row"
    assert found == [{(work, job_id) for job_id, work in free.items()}]
