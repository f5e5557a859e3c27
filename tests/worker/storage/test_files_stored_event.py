"""`job.files_stored` through the outbox: written with the last file's record, delivered
(signed) only to subscriptions that list it, carrying each file's sha256, size,
download_url and fal_url; `job.status_changed` subscribers and the job's own callbacks
do not get it."""

from __future__ import annotations

from falbridge.models.db import transaction
from falbridge.models.jobs import get_job
from falbridge.models.serialize import job_detail
from falbridge.worker.notify import manage
from falbridge.worker.notify.deliver import Outcome, deliver
from falbridge.worker.storage.store import store_files
from tests.plugins.storage import cdn_file
from tests.worker.notify.helpers import deliveries, verified
from tests.worker.storage.helpers import completed_job, png


def test_files_stored_goes_to_the_subscriptions_that_list_it(notifying, sandbox, storage):
    made = manage.create(notifying.url, ["job.files_stored"])
    manage.create(notifying.url, ["job.status_changed"])
    data = png(6, 6)
    job_id = completed_job({"image": cdn_file(sandbox, data)})
    before = {d.id for d in deliveries()}  # pending and completed, to the status_changed one

    store_files(job_id)

    [new] = [d for d in deliveries() if d.id not in before]
    assert len(before) == 2 and str(new.subscription_id) == made["id"]
    assert deliver(new.id).outcome is Outcome.DELIVERED
    body = verified(notifying.wait_for(1)[-1], made["secret"])
    assert body["type"] == "job.files_stored" and body["data"]["id"] == str(job_id)
    assert body["data"]["event"]["source"] == "store"
    [shown] = body["data"]["files"]
    assert shown["status"] == "stored" and shown["size"] == len(data) and len(shown["sha256"]) == 64
    assert shown["download_url"] == f"/api/jobs/{job_id}/files/{shown['id']}"
    assert shown["fal_url"] == shown["url"]


def test_a_message_shows_the_job_as_the_api_does_but_its_input_and_later_history(notifying, sandbox, storage):
    """The message is read column by column (models/event_message.py), not through the
    API's ORM job: the two agree, key for key, on a job with a stored file and its history."""
    made = manage.create(notifying.url, ["job.status_changed", "job.files_stored"])
    job_id = completed_job({"image": cdn_file(sandbox, png(3, 5))})
    store_files(job_id)
    with transaction() as s:
        shown = job_detail(get_job(s, job_id, full=True))
    first, *_, last = deliveries()
    for delivery in (first, last):
        assert deliver(delivery.id).outcome is Outcome.DELIVERED
    early, late = (verified(r, made["secret"])["data"] for r in notifying.wait_for(2))
    expected = {key: value for key, value in shown.items() if key != "input"}
    assert list(late) == [*expected, "sequence", "event"]
    assert {key: late[key] for key in expected} == expected
    assert late["files"][0]["status"] == "stored" and late["sequence"] == len(shown["events"])
    assert early["events"] == shown["events"][:1] and early["sequence"] == 1
