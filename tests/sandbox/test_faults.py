"""Fault injection: every knob's effect, seen from the sink and the ground truth."""

from __future__ import annotations

import time

import httpx
import pytest

from falbridge.sandbox.config import Faults
from falbridge.sandbox.server import SandboxServer
from tests.plugins.sandbox import SandboxHandle, sandbox_test_config, verify_fal_signature
from tests.sandbox.helpers import ECHO, status_of, submit


@pytest.fixture
def client(sandbox):
    with sandbox.client() as client:
        yield client


def test_drop_never_delivers(sandbox, client, webhook_sink):
    sandbox.set_faults(drop=1.0)
    submitted = submit(client, sandbox.url, ECHO, {}, webhook=webhook_sink.url).json()
    sandbox.wait_idle()

    assert webhook_sink.received == []
    truth = sandbox.request(submitted["request_id"])
    assert truth["faults"] == ["drop"]
    assert truth["webhook_state"] == "dropped" and truth["deliveries"] == []
    assert truth["outcome"] == "OK"


def test_duplicate_sends_extra_separately_signed_copies(sandbox, client, webhook_sink):
    sandbox.set_faults(duplicate=1.0, duplicate_copies=2)
    submitted = submit(client, sandbox.url, ECHO, {}, webhook=webhook_sink.url).json()
    sandbox.wait_idle()

    hooks = webhook_sink.received
    assert len(hooks) == 3
    assert len({hook.body for hook in hooks}) == 1
    assert all(verify_fal_signature(hook, sandbox.jwks()) for hook in hooks)
    truth = sandbox.request(submitted["request_id"])
    assert [(d["kind"], d["copy"]) for d in truth["deliveries"]] == [
        ("original", 0),
        ("duplicate", 1),
        ("duplicate", 2),
    ]


def test_delay_holds_back_the_first_delivery(sandbox, client, webhook_sink):
    sandbox.set_faults(delay=1.0, delay_s=0.3)
    submitted = submit(client, sandbox.url, ECHO, {}, webhook=webhook_sink.url).json()
    [hook] = webhook_sink.wait_for(1)

    truth = sandbox.request(submitted["request_id"])
    assert truth["faults"] == ["delay"]
    assert hook.received_at - truth["completed_at"] >= 0.29


def test_reorder_holds_deliveries_back_by_random_amounts(sandbox, client, webhook_sink):
    sandbox.set_faults(reorder=1.0, reorder_window_s=0.6)
    ids = [
        submit(client, sandbox.url, ECHO, {"n": n}, webhook=webhook_sink.url).json()["request_id"]
        for n in range(6)
    ]
    sandbox.wait_idle()

    truths = {rid: sandbox.request(rid) for rid in ids}
    holds = {rid: truths[rid]["fault_params"]["reorder_delay_s"] for rid in ids}
    assert all(0 <= hold <= 0.6 for hold in holds.values())
    assert [holds[rid] for rid in ids] != sorted(holds[rid] for rid in ids)  # seed 0: not monotonic
    arrivals = [hook.json()["request_id"] for hook in webhook_sink.received]
    assert arrivals != ids
    for rid in ids:
        assert truths[rid]["deliveries"][0]["at"] - truths[rid]["completed_at"] >= holds[rid] - 0.01
    for a in ids:  # clearly separated holds arrive in hold order
        for b in ids:
            if holds[a] + 0.15 < holds[b]:
                assert arrivals.index(a) < arrivals.index(b)


def test_webhook_before_response(sandbox, client, webhook_sink):
    sandbox.set_faults(webhook_before_response=1.0)
    response = submit(client, sandbox.url, ECHO, {"x": 1}, webhook=webhook_sink.url)
    received_before_response = webhook_sink.received

    assert response.status_code == 200
    submitted = response.json()
    assert [hook.json()["request_id"] for hook in received_before_response] == [submitted["request_id"]]
    assert received_before_response[0].json()["payload"] == {"endpoint_id": ECHO, "echo": {"x": 1}}
    assert status_of(client, submitted)["status"] == "COMPLETED"
    assert sandbox.request(submitted["request_id"])["faults"] == ["webhook_before_response"]


@pytest.mark.parametrize("status", [503, 502])
def test_submit_5xx_creates_no_job(sandbox, client, status):
    sandbox.set_faults(submit_5xx=1.0, submit_5xx_status=status)
    response = submit(client, sandbox.url, ECHO, {})

    assert response.status_code == status
    assert "nginx" in response.text and "x-fal-request-id" not in response.headers
    truth = sandbox.ground_truth()
    assert truth["requests"] == []
    assert [(r["http_status"], r["reason"]) for r in truth["rejected_submits"]] == [(status, "submit_5xx")]


def test_submit_429_has_retry_after_and_creates_no_job(sandbox, client):
    sandbox.set_faults(submit_429=1.0, retry_after_s=2)
    response = submit(client, sandbox.url, ECHO, {})

    assert response.status_code == 429
    assert response.headers["Retry-After"] == "2"
    truth = sandbox.ground_truth()
    assert truth["requests"] == [] and truth["rejected_submits"][0]["reason"] == "submit_429"


def test_submit_response_lost_runs_the_job_but_closes_the_connection(sandbox, client, webhook_sink, capfd):
    sandbox.set_faults(submit_response_lost=1.0)
    with pytest.raises(httpx.TransportError):
        submit(client, sandbox.url, ECHO, {"lost": True}, webhook=webhook_sink.url)
    [hook] = webhook_sink.wait_for(1)
    sandbox.wait_idle()

    [truth] = sandbox.ground_truth()["requests"]
    assert truth["submit_response_lost"] is True and truth["outcome"] == "OK"
    assert hook.json()["request_id"] == truth["request_id"]
    sandbox.set_faults(submit_response_lost=0.0)
    assert submit(client, sandbox.url, ECHO, {}).status_code == 200  # the client recovers
    assert capfd.readouterr().err == ""


def test_submit_delay_trips_client_read_timeouts_but_creates_the_job(sandbox, client):
    sandbox.set_faults(submit_delay=1.0, submit_delay_s=0.5)
    with pytest.raises(httpx.ReadTimeout):
        client.post(f"{sandbox.url}/{ECHO}", json={}, timeout=httpx.Timeout(5, read=0.1))
    sandbox.wait_idle()

    [truth] = sandbox.ground_truth()["requests"]
    assert truth["faults"] == ["submit_delay"] and truth["outcome"] == "OK"


def test_payload_error_sends_null_payload_but_result_stays_fetchable(sandbox, client, webhook_sink):
    sandbox.set_faults(payload_error=1.0)
    submitted = submit(client, sandbox.url, ECHO, {"big": "x"}, webhook=webhook_sink.url).json()
    [hook] = webhook_sink.wait_for(1)

    body = hook.json()
    assert body["status"] == "OK" and body["payload"] is None
    assert isinstance(body["payload_error"], str) and body["payload_error"]
    assert client.get(submitted["response_url"]).json() == {"endpoint_id": ECHO, "echo": {"big": "x"}}


def test_large_result_pads_the_output_past_10_kb_and_shortens_its_retention(sandbox, client, webhook_sink):
    sandbox.set_faults(large_result=1.0)
    sandbox.set_config(retention_s=3600.0, large_result_retention_s=360.0, retention_scale=1.0)
    submitted = submit(client, sandbox.url, ECHO, {"n": 1}, webhook=webhook_sink.url).json()
    [hook] = webhook_sink.wait_for(1)

    payload = hook.json()["payload"]
    assert payload["echo"] == {"n": 1} and len(payload["sandbox_padding"]) == 10 * 1024
    assert client.get(submitted["response_url"]).json() == payload
    truth = sandbox.request(submitted["request_id"])
    assert truth["faults"] == ["large_result"] and truth["result_bytes"] >= 10 * 1024
    assert truth["expires_at"] - truth["completed_at"] == pytest.approx(360.0)


def test_drop_large_callbacks_drops_only_large_results(sandbox, client, webhook_sink):
    sandbox.set_faults(large_result=0.5, drop_large_callbacks=1.0)
    submitted = [
        submit(client, sandbox.url, ECHO, {"n": n}, webhook=webhook_sink.url).json() for n in range(20)
    ]
    sandbox.wait_idle()

    truths = [sandbox.request(job["request_id"]) for job in submitted]
    large = [truth for truth in truths if "large_result" in truth["faults"]]
    assert 0 < len(large) < len(truths)
    assert all(truth["faults"] == ["large_result", "drop_large_callbacks"] for truth in large)
    assert {truth["webhook_state"] for truth in large} == {"dropped"}
    assert {truth["webhook_state"] for truth in truths if truth not in large} == {"delivered"}
    assert len(webhook_sink.received) == len(truths) - len(large)


def test_drop_large_callbacks_spares_a_large_job_whose_model_failed(sandbox, client, webhook_sink):
    sandbox.set_faults(large_result=1.0, drop_large_callbacks=1.0, error=1.0)
    submitted = submit(client, sandbox.url, ECHO, {}, webhook=webhook_sink.url).json()
    [hook] = webhook_sink.wait_for(1)
    sandbox.wait_idle()

    assert hook.json()["status"] == "ERROR"  # an error body is small: fal keeps it an hour
    assert sandbox.request(submitted["request_id"])["webhook_state"] == "delivered"


def test_result_error_refuses_the_result_with_html_but_leaves_the_status_alone(sandbox, client, webhook_sink):
    sandbox.set_faults(result_error=1.0, result_error_status=410)
    submitted = submit(client, sandbox.url, ECHO, {"n": 1}, webhook=webhook_sink.url).json()
    [hook] = webhook_sink.wait_for(1)
    sandbox.set_faults(result_error=0.0, result_error_status=403)  # the job keeps its snapshot

    assert hook.json()["payload"] == {"endpoint_id": ECHO, "echo": {"n": 1}}
    refused = client.get(submitted["response_url"])
    assert refused.status_code == 410 and refused.headers["content-type"].startswith("text/html")
    assert "410 Gone" in refused.text and "x-fal-request-id" not in refused.headers
    assert status_of(client, submitted)["status"] == "COMPLETED"
    assert sandbox.request(submitted["request_id"])["faults"] == ["result_error"]


def test_result_error_draws_leave_large_results_where_they_were(sandbox, client):
    def large_ones(**faults):
        sandbox.reset()
        sandbox.set_faults(large_result=0.5, **faults)
        submitted = [submit(client, sandbox.url, ECHO, {"n": n}).json() for n in range(12)]
        sandbox.wait_idle()
        return [sandbox.request(job["request_id"])["faults"] for job in submitted]

    alone = large_ones()
    with_refusals = large_ones(result_error=0.5)

    assert [("large_result" in f) for f in alone] == [("large_result" in f) for f in with_refusals]
    refused = [("result_error" in f) for f in with_refusals]
    assert any(refused) and not all(refused)


def test_result_error_status_is_a_4xx_or_5xx(sandbox):
    admin = httpx.Client(base_url=sandbox.url, verify=False)
    for wrong in (399, 600, "410", True):
        answer = admin.put("/_sandbox/faults", json={"result_error_status": wrong})
        assert answer.status_code == 400 and "result_error_status" in answer.json()["detail"]
    assert admin.put("/_sandbox/faults", json={"result_error_status": 599}).status_code == 200
    admin.close()


def test_error_fails_the_job_with_a_runner_error(sandbox, client, webhook_sink):
    sandbox.set_faults(error=1.0)
    submitted = submit(client, sandbox.url, ECHO, {}, webhook=webhook_sink.url).json()
    [hook] = webhook_sink.wait_for(1)
    sandbox.wait_idle()

    failure = {"detail": "Injected runner failure", "error_type": "runner_server_error"}
    assert hook.json() == {
        "request_id": submitted["request_id"],
        "gateway_request_id": submitted["request_id"],
        "status": "ERROR",
        "error": "Invalid status code: 500",
        "payload": failure,
    }
    result = client.get(submitted["response_url"])
    assert (result.status_code, result.json()) == (500, failure)
    assert result.headers["X-Fal-Error-Type"] == "runner_server_error"
    status = status_of(client, submitted)
    assert (status["error"], status["error_type"]) == ("Injected runner failure", "runner_server_error")


def test_bad_signature_fails_verification(sandbox, client, webhook_sink):
    sandbox.set_faults(bad_signature=1.0)
    submitted = submit(client, sandbox.url, ECHO, {}, webhook=webhook_sink.url).json()
    [hook] = webhook_sink.wait_for(1)
    sandbox.wait_idle()

    signature = hook.headers["x-fal-webhook-signature"]
    assert len(signature) == 128 and int(signature, 16) >= 0
    assert not verify_fal_signature(hook, sandbox.jwks())
    assert sandbox.request(submitted["request_id"])["deliveries"][0]["signature_valid"] is False


def test_stale_timestamp_is_shifted_back_but_correctly_signed(sandbox, client, webhook_sink):
    sandbox.set_faults(stale_timestamp=1.0, stale_by_s=600)
    submitted = submit(client, sandbox.url, ECHO, {}, webhook=webhook_sink.url).json()
    [hook] = webhook_sink.wait_for(1)
    sandbox.wait_idle()

    assert abs(time.time() - 600 - int(hook.headers["x-fal-webhook-timestamp"])) < 5
    assert verify_fal_signature(hook, sandbox.jwks())
    attempt = sandbox.request(submitted["request_id"])["deliveries"][0]
    assert attempt["timestamp_stale"] is True and attempt["signature_valid"] is True


def _fault_trace(sandbox, client, webhook_url):
    sandbox.set_faults(
        drop=0.3,
        duplicate=0.3,
        delay=0.3,
        delay_s=0.01,
        payload_error=0.3,
        error=0.3,
        bad_signature=0.3,
        submit_5xx=0.2,
        submit_429=0.1,
    )
    for n in range(25):
        submit(client, sandbox.url, ECHO, {"n": n}, webhook=webhook_url)
    sandbox.wait_idle()
    truth = sandbox.ground_truth()
    accepted = sorted(
        (r["seq"], tuple(r["faults"]), r["outcome"], tuple(d["signature_valid"] for d in r["deliveries"]))
        for r in truth["requests"]
    )
    rejected = [(r["seq"], r["http_status"]) for r in truth["rejected_submits"]]
    return accepted, rejected


def test_same_seed_and_submit_sequence_give_the_same_faults(sandbox, client, webhook_sink):
    first = _fault_trace(sandbox, client, webhook_sink.url)
    sandbox.reset()
    second = _fault_trace(sandbox, client, webhook_sink.url)
    sandbox.reset()
    sandbox.set_config(seed=12345)
    other_seed = _fault_trace(sandbox, client, webhook_sink.url)

    assert first == second
    assert first != other_seed
    applied = {fault for _, faults, _, _ in first[0] for fault in faults}
    assert {"drop", "duplicate", "error"} <= applied and first[1]


def test_initial_faults_come_from_config_and_survive_reset():
    config = sandbox_test_config(faults=Faults(drop=1.0))
    with SandboxServer(config) as server:
        handle = SandboxHandle(server)
        assert handle.faults()["drop"] == 1.0
        handle.set_faults(drop=0.0, error=0.5)
        handle.reset()
        assert handle.faults() == Faults(drop=1.0).as_dict()
        handle.close()


def test_fault_admin_api_validates_and_updates_partially(sandbox):
    admin = httpx.Client(base_url=sandbox.url, verify=False)
    unknown = admin.put("/_sandbox/faults", json={"drop": 0.1, "explode": 1})
    assert unknown.status_code == 400 and "explode" in unknown.json()["detail"]
    assert admin.put("/_sandbox/faults", json={"drop": 1.5}).status_code == 400
    assert admin.put("/_sandbox/faults", json={"duplicate_copies": "2"}).status_code == 400
    assert admin.put("/_sandbox/faults", json=[1]).status_code == 400
    assert sandbox.faults()["drop"] == 0.0  # rejected updates change nothing

    updated = admin.put("/_sandbox/faults", json={"duplicate": 0.25}).json()
    assert updated == {**Faults().as_dict(), "duplicate": 0.25}

    bad_config = admin.put("/_sandbox/config", json={"host": "0.0.0.0"})
    assert bad_config.status_code == 400 and "host" in bad_config.json()["detail"]
    assert admin.put("/_sandbox/config", json={"concurrency": 0}).status_code == 400
    assert admin.get("/_sandbox/config").json()["latency_s"] == 0.01
    admin.close()


def test_idle_endpoint_times_out_with_408_while_busy(sandbox, client):
    sandbox.set_config(latency_s=0.5)
    submit(client, sandbox.url, ECHO, {})
    busy = httpx.get(f"{sandbox.url}/_sandbox/idle", params={"timeout": 0.05}, verify=False)

    assert (busy.status_code, busy.json()) == (408, {"idle": False})
    sandbox.wait_idle()
