"""`job.files_stored` through the outbox: written with the last file's record, delivered
(signed) only to subscriptions that list it, carrying each file's sha256, size,
download_url and fal_url; `job.status_changed` subscribers and the job's own callbacks
do not get it."""

from __future__ import annotations

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
