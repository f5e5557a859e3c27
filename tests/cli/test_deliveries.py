"""`falbridge deliveries list | show | reapply` through click's CliRunner: on the database
(each backend), and through a live falbridge's HTTP API (`--api`) with the sandbox as fal
calling the real receiver back."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

import falbridge
from falbridge.cli import LAZY_COMMANDS, main
from falbridge.models.db import transaction
from falbridge.models.inbox import store_verified
from falbridge.models.jobs import create_job
from tests.cli.test_commands import one_error_line
from tests.plugins.pipeline import TEST_API_TOKEN


@pytest.fixture
def cli(db_url, redis_url, monkeypatch, tmp_path):
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("FALBRIDGE_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.setattr("falbridge.worker.actions.enqueue_follow_ups", lambda follow_ups: None)
    runner = CliRunner()

    def run(*args: str):
        result = runner.invoke(main, list(args), prog_name="falbridge")
        if result.exception and not isinstance(result.exception, SystemExit):
            raise result.exception
        return result

    return run


def _callback(request_id: str) -> bytes:
    return json.dumps({"request_id": request_id, "status": "OK", "payload": {"echo": request_id}}).encode()


def _job_and_delivery(request_id: str) -> tuple[str, int]:
    with transaction() as s:
        job, _ = create_job(s, "fal-ai/some/model", {"n": 1})
        job.request_id, job.status = request_id, "submitted"
        stored = store_verified(s, request_id=request_id, body=_callback(request_id), headers={})
        return str(job.id), stored.delivery_id


def test_the_group_is_registered():
    assert LAZY_COMMANDS["deliveries"] == ("falbridge.cli.deliveries", "deliveries")
    result = CliRunner().invoke(main, ["deliveries", "--help"])
    assert result.exit_code == 0 and all(name in result.stdout for name in ("list", "show", "reapply"))


def test_list_show_and_reapply_on_the_database(cli):
    job_id, first = _job_and_delivery("req-1")
    _, second = _job_and_delivery("req-2")
    table = cli("deliveries", "list")
    assert table.exit_code == 0
    rows = [line.split() for line in table.stdout.splitlines()[1:] if line.strip()]
    assert [(int(r[0]), r[1], r[-1]) for r in rows] == [
        (second, "req-2", "unprocessed"),
        (first, "req-1", "unprocessed"),
    ]
    listed = json.loads(cli("deliveries", "list", "--json", "--limit", "1").stdout)
    assert listed == falbridge.list_deliveries(limit=1).to_json() and listed["next_cursor"]
    rest = json.loads(cli("deliveries", "list", "--json", "--cursor", listed["next_cursor"]).stdout)
    assert [d["id"] for d in rest["deliveries"]] == [first]

    shown = cli("deliveries", "show", str(first), "--json")
    assert json.loads(shown.stdout) == falbridge.get_delivery(first).to_json()
    readable = cli("deliveries", "show", str(first)).stdout
    assert "payload_status" in readable and '"echo": "req-1"' in readable

    applied = cli("deliveries", "reapply", str(first))
    assert applied.exit_code == 0 and applied.stdout == f"delivery {first}: applied (job {job_id})\n"
    again = cli("deliveries", "reapply", str(first))
    assert again.exit_code == 0
    assert again.stdout.startswith(f"delivery {first}: already processed (applied at ")
    assert again.stdout.rstrip().endswith("nothing changed")
    assert falbridge.get(job_id).status == "completed"

    by_job = json.loads(cli("deliveries", "list", "--json", "--job", job_id[:8]).stdout)
    assert [d["id"] for d in by_job["deliveries"]] == [first]
    waiting = json.loads(cli("deliveries", "list", "--json", "--unprocessed").stdout)
    assert [d["id"] for d in waiting["deliveries"]] == [second]
    done = json.loads(cli("deliveries", "list", "--json", "--processed", "--outcome", "applied").stdout)
    assert [d["id"] for d in done["deliveries"]] == [first]
    as_json = json.loads(cli("deliveries", "reapply", str(second), "--json").stdout)
    assert as_json["outcome"] == "applied" and as_json["delivery"]["id"] == second


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (("show", "424242"), "error: no delivery with id '424242'"),
        (("reapply", "424242"), "error: no delivery with id '424242'"),
        (("show", "x"), "error: Invalid value for 'DELIVERY_ID'"),
        (("reapply", "0"), "error: delivery_id must be an integer from 1 to"),
        (("list", "--job", "0" * 8), "error: no job with id '00000000'"),
        (("list", "--cursor", "nope"), "error: --cursor is not one a listing printed"),
        (("list", "--outcome", "won"), "error: Invalid value for '--outcome'"),
        (("list", "--limit", "0"), "error: Invalid value for '--limit'"),
    ],
)
def test_a_wrong_request_is_one_error_line_and_exit_2(cli, args, said):
    assert one_error_line(cli("deliveries", *args), 2).startswith(said)


def test_over_the_api_with_fal_calling_back(pipeline, monkeypatch):
    """A callback stored while nothing was enqueued (Redis away at that moment), found and
    applied through the HTTP API: `falbridge --api URL deliveries ...`."""
    monkeypatch.setattr("falbridge.webhooks.receive.view.wake_drainer", lambda *args: False)
    monkeypatch.setenv("FALBRIDGE_API_TOKEN", TEST_API_TOKEN)

    def remote(*args: str):
        result = CliRunner().invoke(main, ["--api", pipeline.receiver_url, "deliveries", *args])
        assert TEST_API_TOKEN not in result.output
        return result

    # fal calls back a while after taking the job; by then the worker is stopped, so no
    # drain, whoever asked for it, can apply the callback before the API is asked to.
    pipeline.sandbox.set_faults(delay=1.0, delay_s=2.0)
    job = falbridge.submit("fal-ai/some/model", {"n": 1})
    request_id = pipeline.wait_status(job.id, "submitted").request_id
    pipeline.pause_worker()
    pipeline.sandbox.wait_idle(timeout=15)
    [waiting] = json.loads(remote("list", "--unprocessed", "--json").stdout)["deliveries"]
    assert waiting["request_id"] == request_id
    shown = json.loads(remote("show", str(waiting["id"]), "--json").stdout)
    assert shown == falbridge.get_delivery(waiting["id"]).to_json()
    applied = remote("reapply", str(waiting["id"]))
    assert applied.exit_code == 0 and applied.stdout == f"delivery {waiting['id']}: applied (job {job.id})\n"
    assert falbridge.get(job.id).status == "completed"
    again = remote("reapply", str(waiting["id"]))
    assert again.exit_code == 0 and "already processed" in again.stdout
    assert [
        d["id"] for d in json.loads(remote("list", "--job", job.id[:8], "--json").stdout)["deliveries"]
    ] == [waiting["id"]]
    missing = remote("show", "424242")
    assert (missing.exit_code, missing.stderr.strip()) == (2, "error: no delivery with id '424242'")
