"""A subscription's secret is shown once and kept nowhere in clear: not in any row of
any table, not in a log line, not in a listing, not in what is sent (only its HMAC)."""

from __future__ import annotations

import base64
import logging

from sqlalchemy import select

from falbridge.models.db import transaction
from falbridge.models.tables import Base
from falbridge.worker.notify import manage
from falbridge.worker.notify.deliver import deliver
from tests.worker.notify.helpers import complete, deliveries, new_job


def test_the_secret_is_nowhere_after_it_was_shown(notifying, caplog):
    caplog.set_level(logging.DEBUG)
    made = manage.create(notifying.url, ["job.status_changed"])
    rotated = manage.rotate_secret(made["id"])
    job = new_job()
    complete(job.id)
    for delivery in deliveries():
        deliver(delivery.id)
    requests = notifying.wait_for(4)
    shown = [str(manage.listing()), str(manage.show(made["id"])), str(manage.delivery_log())]
    for secret in (made["secret"], rotated["secret"]):
        raw = base64.b64decode(secret.removeprefix("whsec_"))
        forms = [secret, secret.removeprefix("whsec_")]
        assert not [form for form in forms for text in shown if form in text]
        assert not [r for r in caplog.records if any(form in r.getMessage() for form in forms)]
        assert not [r for r in requests if raw in r.body or any(f.encode() in r.body for f in forms)]
        with transaction() as s:
            for table in Base.metadata.sorted_tables:
                for row in s.execute(select(table)):
                    for value in row:
                        blob = value if isinstance(value, bytes) else str(value).encode()
                        assert raw not in blob and not any(form.encode() in blob for form in forms), (
                            table.name
                        )
