"""docs/webhooks-out.md's ten-line receiver, run as written against real deliveries:
it accepts what falbridge signs and refuses a body that was tampered with."""

from __future__ import annotations

import re
from pathlib import Path

import httpx

from falbridge.worker.notify import manage
from falbridge.worker.notify.deliver import Outcome, deliver
from tests.plugins.pipeline import ServerThread
from tests.worker.notify.helpers import complete, new_job, one_delivery

DOC = Path(__file__).resolve().parents[3] / "docs" / "webhooks-out.md"


def _receiver_app(secret: str, monkeypatch):
    code = re.search(r"## A verifying receiver.*?```python\n(.*?)```", DOC.read_text(), re.S)[1]
    monkeypatch.setenv("FALBRIDGE_WEBHOOK_SECRET", secret)
    namespace: dict = {"__name__": "receiver"}
    exec(compile(code, str(DOC), "exec"), namespace)
    return namespace["app"]


def test_the_documented_receiver_verifies_our_deliveries(notifying, monkeypatch):
    made = manage.create(notifying.url, ["job.completed"])  # for its secret, then re-pointed
    receiver = ServerThread(_receiver_app(made["secret"], monkeypatch)).start()
    try:
        manage.update(made["id"], url=receiver.url + "/hooks/falbridge")
        job = new_job()
        complete(job.id)
        assert deliver(one_delivery().id).outcome is Outcome.DELIVERED
        [attempt] = manage.delivery_log(made["id"])[0]["attempt_log"]
        assert attempt["status_code"] == 204
        forged = httpx.post(
            receiver.url + "/hooks/falbridge",
            content=b'{"type":"job.completed"}',
            headers={"webhook-id": "evt_1", "webhook-timestamp": "1", "webhook-signature": "v1,AAAA"},
        )
        assert forged.status_code == 400
    finally:
        receiver.stop()
