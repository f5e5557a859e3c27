"""`falbridge subscriptions ...` and `falbridge events replay`, in process and through
the HTTP API (`--api`), against the real database and a real subscriber over HTTP."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from falbridge.cli import main
from falbridge.webhooks.app import create_app
from falbridge.worker.notify.deliver import deliver
from tests.plugins.pipeline import TEST_API_TOKEN, ServerThread
from tests.worker.notify.helpers import complete, deliveries, new_job, verified


@pytest.fixture(params=["in process", "over the API"])
def cli(request, notifying, monkeypatch):
    monkeypatch.setenv("FALBRIDGE_API_TOKENS", TEST_API_TOKEN)
    server = None
    if request.param == "over the API":
        server = ServerThread(create_app()).start()
        monkeypatch.setenv("FALBRIDGE_API_URL", server.url)
        monkeypatch.setenv("FALBRIDGE_API_TOKEN", TEST_API_TOKEN)
    runner = CliRunner()

    def run(*args: str, code: int = 0):
        result = runner.invoke(main, list(args), prog_name="falbridge")
        if result.exception and not isinstance(result.exception, SystemExit):
            raise result.exception
        assert result.exit_code == code, result.output
        return result

    yield run
    if server is not None:
        server.stop()


def test_create_list_show_update_rotate_delete(cli, notifying):
    created = cli("subscriptions", "create", notifying.url, "-e", "job.completed")
    made = json.loads(created.stdout)
    assert made["secret"].startswith("whsec_") and "shown only now" in created.stderr
    listed = cli("subscriptions", "list").stdout
    assert made["id"] in listed and "whsec_" not in listed
    shown = json.loads(cli("subscriptions", "show", made["id"]).stdout)
    assert shown["events"] == ["job.completed"] and "secret" not in shown
    changed = json.loads(cli("subscriptions", "update", made["id"], "--disable", "-e", "job.failed").stdout)
    assert changed["enabled"] is False and changed["events"] == ["job.failed"]
    rotated = json.loads(cli("subscriptions", "rotate-secret", made["id"]).stdout)
    assert rotated["secret"] != made["secret"]
    cli("subscriptions", "delete", made["id"])
    gone = cli("subscriptions", "show", made["id"], code=2)
    assert gone.stderr.startswith("error: ") and "no subscription" in gone.stderr


def test_bad_input_is_one_error_line_exit_2(cli, notifying):
    private = cli("subscriptions", "create", "http://10.9.8.7/x", "-e", "job.completed", code=2)
    assert private.stderr.count("\n") == 1 and "url" in private.stderr
    cli("subscriptions", "create", notifying.url, "-e", "job.completed")
    again = cli("subscriptions", "create", notifying.url, "-e", "job.completed", code=2)
    assert "already" in again.stderr
    assert "no event" in cli("events", "replay", "evt_999999", code=2).stderr


def test_replay_an_event_and_a_subscriptions_events(cli, notifying):
    made = json.loads(cli("subscriptions", "create", notifying.url, "-e", "job.completed").stdout)
    job = new_job()
    complete(job.id)
    [delivery] = deliveries()
    deliver(delivery.id)
    assert "1 deliveries" in cli("events", "replay", f"evt_{delivery.event_id}").stdout
    deliver(delivery.id)
    assert "1 events" in cli("subscriptions", "replay", made["id"], "--since", "2000-01-01T00:00:00Z").stdout
    deliver(delivery.id)
    bodies = [verified(r, made["secret"]) for r in notifying.wait_for(3)]
    assert {b["data"]["id"] for b in bodies} == {str(job.id)}
    log = json.loads(cli("subscriptions", "deliveries", made["id"]).stdout)
    assert log[0]["status"] == "delivered" and len(log[0]["attempt_log"]) == 3
    assert json.loads(cli("subscriptions", "deliveries", "--status", "exhausted").stdout) == []
