"""A wave's claims and messages (worker/notify/prepare.py), on every database: what each
delivery of a mixed wave sends (or why not), its bodies byte for byte what a delivery
claimed alone sends, and a constant number of statements whatever the wave's size."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Table, create_engine, delete, select, update
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool
from standardwebhooks.webhooks import Webhook

import falbridge
from falbridge.models import deployment_secrets
from falbridge.models.db import transaction
from falbridge.models.jobs import get_job
from falbridge.models.serialize import job_detail
from falbridge.models.states import JobStatus
from falbridge.models.tables import EventDelivery, Job, JobEvent, ResultFile, StoredFile, Subscription, utcnow
from falbridge.worker.notify import manage
from falbridge.worker.notify.deliver import claim_and_prepare
from falbridge.worker.notify.prepare import HookCall, Request, claim_and_prepare_all
from tests.plugins.db import statements_sent
from tests.worker.notify.helpers import complete, deliveries, move, new_job


class _Undone(Exception):
    """Raised to roll a transaction back: a wave claimed and read, then undone."""


@contextmanager
def _rolled_back() -> Iterator[Session]:
    try:
        with transaction() as s:
            yield s
            raise _Undone
    except _Undone:
        pass


def _with_files(job_id) -> None:
    """Two result files, one stored and one missing, and one with no copy recorded."""
    with transaction() as s:
        for n, path in enumerate(("image", "mask", "extra")):
            s.add(ResultFile(job_id=job_id, path=path, url=f"https://cdn.example/{job_id}/{n}.png", width=n))
        s.add(StoredFile(job_id=job_id, path="image", fal_url="x", status="stored", sha256="a" * 64, size=9))
        s.add(StoredFile(job_id=job_id, path="mask", fal_url="y", status="missing", reason="gone at fal"))


def _mixed_deliveries(notifying) -> tuple[dict, dict, list[uuid.UUID]]:
    """Two subscriptions (every transition; terminal ones), four jobs with files, the last
    with a notify_url: deliveries of several jobs, events and subscriptions."""
    every = manage.create(notifying.url, ["job.status_changed"])
    terminal = manage.create(notifying.url + "/terminal", ["job.completed", "job.failed"])
    jobs = [new_job().id for _ in range(3)] + [new_job(callbacks={"notify_url": notifying.url + "/job"}).id]
    for n, job_id in enumerate(jobs):
        _with_files(job_id)
        complete(job_id) if n else move(job_id, JobStatus.FAILED, error="boom")
    return every, terminal, jobs


def _comparable(prepared):
    """What a prepared delivery sends, but the signing timestamp (and so the signature)."""
    if isinstance(prepared, Request):
        headers = {
            k: v for k, v in prepared.headers.items() if k not in ("webhook-timestamp", "webhook-signature")
        }
        return prepared.url, prepared.body, headers, prepared.job_id
    return prepared


def test_a_waves_bodies_are_byte_for_byte_those_of_each_delivery_prepared_alone(notifying):
    every, terminal, _ = _mixed_deliveries(notifying)
    ids = [d.id for d in deliveries()]
    assert len(ids) >= 15
    cfg = falbridge.config.current()
    with transaction() as s:  # made now: a wave rolled back would undo its making
        notify_secret = deployment_secrets.reveal(s, cfg, deployment_secrets.NOTIFY)
    with _rolled_back() as s:
        wave = claim_and_prepare_all(s, ids, cfg)
    alone = []
    for i in ids:
        with _rolled_back() as s:
            alone.append((i, claim_and_prepare(s, i, cfg)))
    assert [(i, p[0], _comparable(p[1])) for i, p in wave] == [(i, p[0], _comparable(p[1])) for i, p in alone]
    secrets = {notifying.url: every["secret"], notifying.url + "/terminal": terminal["secret"]}
    for _, (_claim, request) in wave:
        assert isinstance(request, Request)
        Webhook(secrets.get(request.url, notify_secret)).verify(request.body, request.headers)
        _shows_the_job_as_the_api(json.loads(request.body))


def _shows_the_job_as_the_api(body: dict) -> None:
    """The message's data is the API's job (read through the ORM) but its input, with the
    history up to the event."""
    with transaction() as s:
        shown = job_detail(get_job(s, body["data"]["id"], full=True))
    sequence = body["data"]["sequence"]
    expected = {key: value for key, value in shown.items() if key != "input"}
    expected["events"] = shown["events"][:sequence]
    assert {key: body["data"][key] for key in expected} == expected
    assert len(body["data"]["files"]) == 3


def _delete_alone(engine, table: Table, where) -> None:
    """A row deleted with its foreign keys not enforced for that statement: what a wave
    reading under read committed (PostgreSQL) sees when the row goes between its claim
    and its read."""
    if engine.dialect.name == "sqlite":
        bare = create_engine(engine.url, poolclass=NullPool)  # SQLite's default: foreign keys off
        try:
            with bare.begin() as conn:
                assert conn.execute(delete(table).where(where)).rowcount == 1
        finally:
            bare.dispose()
        return
    with engine.begin() as conn:
        conn.exec_driver_sql("SET LOCAL session_replication_role = replica")  # no foreign-key triggers
        assert conn.execute(delete(table).where(where)).rowcount == 1


def test_each_delivery_of_a_mixed_wave_gets_what_it_sends_or_why_not(notifying, engine):
    kept = manage.create(notifying.url, ["job.completed"])
    deleted = manage.create(notifying.url + "/deleted", ["job.completed"])
    disabled = manage.create(notifying.url + "/disabled", ["job.completed"])
    jobs = {
        "plain": new_job(),
        "gone": new_job(),
        "callbacks": new_job(
            callbacks={"notify_url": notifying.url + "/job", "on_complete": "myapp.tasks.crop"}
        ),
    }
    for job in jobs.values():
        complete(job.id)
    manage.update(disabled["id"], enabled=False)
    by = {(str(d.subscription_id), d.target, d.event_id): d.id for d in deliveries()}
    event_of = {name: _terminal_event(job.id) for name, job in jobs.items()}
    sub = {"kept": kept["id"], "deleted": deleted["id"], "disabled": disabled["id"]}
    ids = {
        "sent": by[(sub["kept"], "subscription", event_of["plain"])],
        "not due": by[(sub["deleted"], "subscription", event_of["plain"])],
        "taken": by[(sub["disabled"], "subscription", event_of["plain"])],
        "deleted subscription": by[(sub["deleted"], "subscription", event_of["callbacks"])],
        "disabled": by[(sub["disabled"], "subscription", event_of["callbacks"])],
        "event deleted": by[(sub["kept"], "subscription", event_of["gone"])],
        "notify_url": by[("None", "notify_url", event_of["callbacks"])],
        "on_complete": by[("None", "on_complete", event_of["callbacks"])],
    }
    with transaction() as s:
        s.execute(
            update(EventDelivery)
            .where(EventDelivery.id == ids["not due"])
            .values(next_attempt_at=utcnow().replace(year=2100))
        )
    cfg = falbridge.config.current()
    with transaction() as s:
        assert claim_and_prepare(s, ids["taken"], cfg) is not None  # another worker's, its lease running
    _delete_alone(engine, Subscription.__table__, Subscription.id == uuid.UUID(deleted["id"]))
    _delete_alone(engine, Job.__table__, Job.id == jobs["gone"].id)
    order = list(ids)
    with transaction() as s:
        wave = dict(claim_and_prepare_all(s, [ids[name] for name in order], cfg))
    got = {name: wave[ids[name]] for name in order}
    assert got["not due"] is None and got["taken"] is None
    claimed = {name: prepared for name, prepared in got.items() if prepared is not None}
    assert {name: claim.delivery_id for name, (claim, _) in claimed.items()} == {n: ids[n] for n in claimed}
    assert all(claim.attempt == 1 for claim, _ in claimed.values())
    sends = {name: prepared for name, (_, prepared) in claimed.items()}
    assert sends["deleted subscription"] == "subscription deleted"
    assert sends["disabled"] == "subscription disabled: by a user"
    assert sends["event deleted"] == "event deleted"
    assert sends["on_complete"] == HookCall(
        "myapp.tasks.crop", None, str(jobs["callbacks"].id), f"evt_{event_of['callbacks']}"
    )
    assert isinstance(sends["sent"], Request) and sends["sent"].url == notifying.url
    Webhook(kept["secret"]).verify(sends["sent"].body, sends["sent"].headers)
    notify = sends["notify_url"]
    assert isinstance(notify, Request) and notify.url == notifying.url + "/job"
    with transaction() as s:
        Webhook(deployment_secrets.reveal(s, cfg, deployment_secrets.NOTIFY)).verify(
            notify.body, notify.headers
        )
    assert json.loads(notify.body)["data"]["id"] == str(jobs["callbacks"].id)


def _terminal_event(job_id) -> int:
    with transaction() as s:
        return s.scalars(
            select(JobEvent.id).where(JobEvent.job_id == job_id, JobEvent.to_status == "completed")
        ).one()


def _job_of(event_id: int) -> uuid.UUID:
    with transaction() as s:
        return s.scalars(select(JobEvent.job_id).where(JobEvent.id == event_id)).one()


def test_a_wave_claims_and_reads_in_the_same_statements_whatever_its_size(notifying):
    """Four deliveries of four jobs (with files) to two subscriptions and to a job's
    notify_url, and every delivery of those jobs at once, cost what one costs: one
    UPDATE, then one SELECT each for the events, the subscriptions (none for a notify_url
    alone), the notify secret (none for a subscription alone), the files, their stored
    copies and the histories."""
    every, terminal, (first, second, third, with_url) = _mixed_deliveries(notifying)
    by_job: dict[tuple[str, uuid.UUID], int] = {}  # (subscription or target, job): a delivery
    for d in deliveries():
        by_job.setdefault((str(d.subscription_id or d.target), _job_of(d.event_id)), d.id)
    four = [
        by_job[(every["id"], first)],
        by_job[(terminal["id"], second)],
        by_job[(terminal["id"], third)],
        by_job[("notify_url", with_url)],
    ]
    one, with_notify = four[:1], four[-1:]
    cfg = falbridge.config.current()
    with transaction() as s:  # the notify secret made beforehand: a wave only reads it
        deployment_secrets.ensure(s, cfg, deployment_secrets.NOTIFY)
    everyone = [d.id for d in deliveries()]
    counted = []
    for wave in (with_notify, four, one, everyone):
        with statements_sent() as seen, _rolled_back() as s:
            prepared = claim_and_prepare_all(s, wave, cfg)
        assert all(p is not None and isinstance(p[1], Request) for _, p in prepared)
        counted.append([sql.split()[0] for sql in seen])
    notify_alone, wave_of_four, subscription_alone, all_at_once = counted
    assert len({*four}) == 4 and len(everyone) > 4
    assert wave_of_four == all_at_once == ["UPDATE", *["SELECT"] * 6]
    assert notify_alone == subscription_alone == ["UPDATE", *["SELECT"] * 5]


def test_a_delivery_named_twice_in_a_wave_is_claimed_and_sent_once(notifying):
    manage.create(notifying.url, ["job.completed"])
    complete(new_job().id)
    [only] = [d.id for d in deliveries()]
    with transaction() as s:
        [(first, claimed), (second, again)] = claim_and_prepare_all(
            s, [only, only], falbridge.config.current()
        )
    assert first == second == only and claimed is not None and again is None
