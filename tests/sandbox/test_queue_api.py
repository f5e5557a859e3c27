"""Queue REST API over real HTTP: submit, status, result, cancel (docs/fal-protocol.md, "Queue API")."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest

from falbridge.sandbox.server import SandboxServer
from tests.plugins.sandbox import sandbox_test_config
from tests.sandbox.helpers import ECHO, FLORENCE, data_uri, png_bytes, status_of, submit, wait_status


@pytest.fixture
def client(sandbox):
    with sandbox.client() as client:
        yield client


def test_submit_answers_200_with_ids_and_app_only_urls(sandbox, client):
    response = submit(client, sandbox.url, FLORENCE, {"image_url": data_uri(png_bytes(8, 8))})

    assert response.status_code == 200
    body = response.json()
    request_id = body["request_id"]
    assert uuid.UUID(request_id).version == 4
    assert body["gateway_request_id"] == request_id
    assert body["status"] == "IN_QUEUE"
    assert isinstance(body["queue_position"], int)
    root = f"{sandbox.url}/fal-ai/florence-2-large/requests/{request_id}"
    assert body["status_url"] == f"{root}/status"
    assert body["response_url"] == root
    assert body["cancel_url"] == f"{root}/cancel"
    assert response.headers["x-fal-request-id"] == request_id
    assert response.headers["content-type"] == "application/json"


def test_status_goes_in_progress_then_completed_and_result_is_bare_output(sandbox, client):
    sandbox.set_config(latency_s=0.3)
    submitted = submit(client, sandbox.url, ECHO, {"prompt": "hi"}).json()

    running = wait_status(client, submitted, "IN_PROGRESS")
    early = client.get(submitted["response_url"])

    assert running["logs"] is None
    assert {"status_url", "response_url", "cancel_url", "request_id"} <= running.keys()
    assert client.get(submitted["status_url"]).status_code == 202
    assert early.status_code == 400
    assert early.json() == {"detail": "Request is still in progress"}

    sandbox.wait_idle()
    done = client.get(submitted["status_url"])
    assert done.status_code == 200
    assert done.json()["status"] == "COMPLETED"
    assert done.json()["metrics"]["inference_time"] >= 0.3
    assert done.json()["logs"] is None
    assert "error" not in done.json()
    for url in (submitted["response_url"], submitted["response_url"] + "/response"):
        result = client.get(url)
        assert result.status_code == 200
        assert result.json() == {"endpoint_id": ECHO, "echo": {"prompt": "hi"}}
        assert result.headers["x-fal-request-id"] == submitted["request_id"]


@pytest.mark.parametrize("value, has_logs", [("1", True), ("true", True), ("0", False), ("false", False)])
def test_logs_query_parameter(sandbox, client, value, has_logs):
    submitted = submit(client, sandbox.url, ECHO, {}).json()
    sandbox.wait_idle()

    body = client.get(submitted["status_url"], params={"logs": value}).json()

    if has_logs:
        assert body["logs"] and {"message", "timestamp", "level", "source"} <= body["logs"][0].keys()
    else:
        assert body["logs"] is None


def test_logs_parameter_rejects_garbage(sandbox, client):
    submitted = submit(client, sandbox.url, ECHO, {}).json()
    assert client.get(submitted["status_url"], params={"logs": "maybe"}).status_code == 422


def test_sub_path_rule_status_result_cancel_only_under_owner_app(sandbox, client):
    submitted = submit(client, sandbox.url, FLORENCE, {"image_url": data_uri(png_bytes(8, 8))}).json()
    request_id = submitted["request_id"]
    sandbox.wait_idle()
    full_path = f"{sandbox.url}/{FLORENCE}/requests/{request_id}"
    other_app = f"{sandbox.url}/fal-ai/evf-sam/requests/{request_id}"

    assert client.get(submitted["status_url"]).status_code == 200
    for root in (full_path, other_app):
        assert client.get(f"{root}/status").status_code == 404
        assert client.get(root).json() == {"detail": "Request not found"}
        cancel = client.put(f"{root}/cancel")
        assert (cancel.status_code, cancel.json()) == (404, {"status": "NOT_FOUND"})

    sandbox.set_config(accept_full_path_urls=True)
    assert client.get(f"{full_path}/status").status_code == 200
    assert client.get(f"{other_app}/status").status_code == 404


def test_namespaced_and_legacy_endpoint_ids(sandbox, client):
    workflow = submit(client, sandbox.url, "workflows/acme/pipeline/step-one", {}).json()
    legacy = submit(client, sandbox.url, "123-myapp", {}).json()

    assert workflow["status_url"].startswith(f"{sandbox.url}/workflows/acme/pipeline/requests/")
    assert legacy["status_url"].startswith(f"{sandbox.url}/123/myapp/requests/")
    assert submit(client, sandbox.url, "single-segment-ish", {}).status_code == 404
    assert submit(client, sandbox.url, "workflows/acme", {}).status_code == 404


@pytest.mark.parametrize("authorization", [None, "", "Bearer", "Key", "Basic a2V5"])
def test_every_queue_call_needs_a_key(sandbox, client, authorization):
    submitted = submit(client, sandbox.url, ECHO, {}).json()
    headers = {} if authorization is None else {"Authorization": authorization}
    with httpx.Client(headers=headers, verify=False) as anonymous:
        calls = [
            anonymous.post(f"{sandbox.url}/{ECHO}", json={}),
            anonymous.get(submitted["status_url"]),
            anonymous.get(submitted["response_url"]),
            anonymous.put(submitted["cancel_url"]),
        ]
    for response in calls:
        assert response.status_code == 401
        assert isinstance(response.json()["detail"], str)


def test_allowed_keys_restricts_accepted_keys():
    with (
        SandboxServer(sandbox_test_config(allowed_keys={"good:key"})) as server,
        httpx.Client(verify=False) as client,
    ):
        wrong = client.post(f"{server.url}/{ECHO}", json={}, headers={"Authorization": "Key bad:key"})
        right = client.post(f"{server.url}/{ECHO}", json={}, headers={"Authorization": "Key good:key"})
    assert wrong.status_code == 401
    assert right.status_code == 200


@pytest.mark.parametrize("raw", [b"[1, 2]", b"not json", b"", b'"text"'])
def test_body_must_be_a_json_object(sandbox, client, raw):
    response = client.post(f"{sandbox.url}/{ECHO}", content=raw, headers={"Content-Type": "application/json"})

    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"][0] == "body"
    assert sandbox.ground_truth()["requests"] == []


def test_unknown_request_ids(sandbox, client):
    root = f"{sandbox.url}/fal-ai/evf-sam/requests/{uuid.uuid4()}"
    assert (client.get(f"{root}/status").status_code, client.get(root).status_code) == (404, 404)
    assert client.get(root).json() == {"detail": "Request not found"}
    cancel = client.put(f"{root}/cancel")
    assert (cancel.status_code, cancel.json()) == (404, {"status": "NOT_FOUND"})


def test_results_expire_after_retention(sandbox, client):
    sandbox.set_config(retention_s=0.2)
    submitted = submit(client, sandbox.url, ECHO, {}).json()
    sandbox.wait_idle()
    assert client.get(submitted["response_url"]).status_code == 200

    wait_gone = lambda: client.get(submitted["status_url"]).status_code == 404  # noqa: E731
    from tests.sandbox.helpers import poll_until

    poll_until(wait_gone, bool, timeout=5)

    assert client.get(submitted["response_url"]).json() == {"detail": "Request not found"}
    assert client.put(submitted["cancel_url"]).json() == {"status": "NOT_FOUND"}
    assert sandbox.request(submitted["request_id"])["expired"] is True


def test_queue_position_counts_requests_ahead_and_low_priority_waits(sandbox, client):
    sandbox.set_config(concurrency=1, latency_s=0.3)
    first = submit(client, sandbox.url, ECHO, {"n": 0}).json()
    wait_status(client, first, "IN_PROGRESS")

    queued = [submit(client, sandbox.url, ECHO, {"n": n}).json() for n in (1, 2, 3)]
    low = submit(client, sandbox.url, ECHO, {"n": "low"}, headers={"X-Fal-Queue-Priority": "low"}).json()
    normal = submit(client, sandbox.url, ECHO, {"n": 4}).json()

    assert [item["queue_position"] for item in queued] == [0, 1, 2]
    assert low["queue_position"] == 3
    assert normal["queue_position"] == 3  # jumps ahead of the low-priority request
    status = client.get(low["status_url"])
    assert status.status_code == 202
    assert status.json() == {
        **{k: low[k] for k in ("request_id", "status_url", "response_url", "cancel_url")},
        "status": "IN_QUEUE",
        "queue_position": 4,
    }

    for item in [*queued, normal, low]:
        assert client.put(item["cancel_url"]).status_code == 202
    sandbox.wait_idle()
    assert sandbox.request(first["request_id"])["outcome"] == "OK"


def test_low_priority_runs_after_normal_ones(sandbox, client):
    sandbox.set_config(concurrency=1, latency_s=0.05)
    blocker = submit(client, sandbox.url, ECHO, {"n": "blocker"}).json()
    wait_status(client, blocker, "IN_PROGRESS")
    low = submit(client, sandbox.url, ECHO, {}, headers={"X-Fal-Queue-Priority": "low"}).json()
    normals = [submit(client, sandbox.url, ECHO, {"n": n}).json() for n in range(2)]
    sandbox.wait_idle()

    started = {r["request_id"]: r["started_at"] for r in sandbox.ground_truth()["requests"]}
    assert started[normals[0]["request_id"]] < started[normals[1]["request_id"]] < started[low["request_id"]]


def test_invalid_priority_header_is_rejected(sandbox, client):
    response = submit(client, sandbox.url, ECHO, {}, headers={"X-Fal-Queue-Priority": "urgent"})
    assert response.status_code == 422


def test_optional_fal_headers_and_query_are_recorded(sandbox, client):
    lifecycle = json.dumps({"expiration_duration_seconds": 3600})
    headers = {
        "X-Fal-Request-Timeout": "30",
        "X-Fal-Queue-Priority": "low",
        "X-Fal-Object-Lifecycle-Preference": lifecycle,
        "X-Fal-Store-IO": "0",
    }
    submitted = submit(
        client, sandbox.url, ECHO, {}, headers=headers, params={"fal_max_queue_length": "5"}
    ).json()

    truth = sandbox.request(submitted["request_id"])
    assert truth["headers_seen"] == {
        "x-fal-request-timeout": "30",
        "x-fal-queue-priority": "low",
        "x-fal-object-lifecycle-preference": lifecycle,
        "x-fal-store-io": "0",
    }
    assert truth["query_seen"] == {"fal_max_queue_length": "5"}
    assert truth["priority"] == "low"


def test_max_queue_length_rejects_with_429_when_queue_is_full(sandbox, client):
    sandbox.set_config(concurrency=1, latency_s=0.3)
    running = submit(client, sandbox.url, ECHO, {}).json()
    wait_status(client, running, "IN_PROGRESS")
    limit = {"fal_max_queue_length": "1"}

    waiting = submit(client, sandbox.url, ECHO, {}, params=limit)
    refused = submit(client, sandbox.url, ECHO, {}, params=limit)

    assert waiting.status_code == 200
    assert refused.status_code == 429
    assert isinstance(refused.json()["detail"], str)
    truth = sandbox.ground_truth()
    assert len(truth["requests"]) == 2
    assert [(r["http_status"], r["reason"]) for r in truth["rejected_submits"]] == [(429, "queue_full")]
    client.put(waiting.json()["cancel_url"])


# fal-client 1.0 (installed for the tests) sends the first; newer releases the second.
@pytest.mark.parametrize("header", ["X-Fal-Request-Timeout", "X-Fal-Request-Start-Timeout"])
def test_request_timeout_header_fails_requests_that_never_started(sandbox, client, header):
    sandbox.set_config(concurrency=1, latency_s=0.3)
    running = submit(client, sandbox.url, ECHO, {}).json()
    wait_status(client, running, "IN_PROGRESS")
    late = submit(client, sandbox.url, ECHO, {}, headers={header: "0.05"}).json()
    sandbox.wait_idle()

    assert sandbox.request(late["request_id"])["start_timeout_s"] == 0.05

    result = client.get(late["response_url"])
    assert result.status_code == 504
    assert result.headers["X-Fal-Error-Type"] == "request_timeout"
    assert status_of(client, late)["error_type"] == "request_timeout"


def test_cancel_queued_request_never_runs_and_gets_error_webhook(sandbox, client, webhook_sink):
    sandbox.set_config(concurrency=1, latency_s=0.3)
    running = submit(client, sandbox.url, ECHO, {}).json()
    wait_status(client, running, "IN_PROGRESS")
    queued = submit(client, sandbox.url, ECHO, {}, webhook=webhook_sink.url).json()

    cancel = client.put(queued["cancel_url"])
    assert (cancel.status_code, cancel.json()) == (202, {"status": "CANCELLATION_REQUESTED"})
    [hook] = webhook_sink.wait_for(1)
    again = client.put(queued["cancel_url"])
    assert (again.status_code, again.json()) == (400, {"status": "ALREADY_COMPLETED"})

    status = client.get(queued["status_url"])
    assert status.status_code == 200
    assert status.json()["status"] == "COMPLETED"
    assert status.json()["error_type"] == "client_cancelled"
    result = client.get(queued["response_url"])
    assert result.status_code == 499
    assert result.json() == {"detail": "Request cancelled by client", "error_type": "client_cancelled"}
    assert result.headers["X-Fal-Error-Type"] == "client_cancelled"
    assert hook.json() == {
        "request_id": queued["request_id"],
        "gateway_request_id": queued["request_id"],
        "status": "ERROR",
        "error": "Invalid status code: 499",
        "payload": {"detail": "Request cancelled by client", "error_type": "client_cancelled"},
    }
    truth = sandbox.request(queued["request_id"])
    assert truth["outcome"] == "CANCELLED" and truth["started_at"] is None


def test_cancel_running_request_ends_cancelled_after_its_latency(sandbox, client):
    sandbox.set_config(latency_s=0.3)
    running = submit(client, sandbox.url, ECHO, {}).json()
    wait_status(client, running, "IN_PROGRESS")

    assert client.put(running["cancel_url"]).status_code == 202
    sandbox.wait_idle()

    truth = sandbox.request(running["request_id"])
    assert truth["outcome"] == "CANCELLED"
    assert truth["started_at"] is not None
    assert truth["completed_at"] - truth["started_at"] >= 0.3
    assert client.get(running["response_url"]).status_code == 499


def test_no_cancel_webhook_when_disabled(sandbox, client, webhook_sink):
    sandbox.set_config(concurrency=1, latency_s=0.3, webhook_on_cancel=False)
    running = submit(client, sandbox.url, ECHO, {}).json()
    wait_status(client, running, "IN_PROGRESS")
    queued = submit(client, sandbox.url, ECHO, {}, webhook=webhook_sink.url).json()
    client.put(queued["cancel_url"])
    sandbox.wait_idle()

    assert webhook_sink.received == []
    assert sandbox.request(queued["request_id"])["webhook_state"] == "skipped"


def test_connections_are_kept_alive(sandbox, client):
    ports = set()
    for _ in range(5):
        response = client.post(f"{sandbox.url}/{ECHO}", json={})
        ports.add(response.extensions["network_stream"].get_extra_info("client_addr")[1])
        assert "close" not in response.headers.get("connection", "")
    assert len(ports) == 1


def test_files_are_served_with_type_and_length(sandbox, client):
    submitted = submit(client, sandbox.url, FLORENCE, {"image_url": data_uri(png_bytes(30, 20))}).json()
    sandbox.wait_idle()
    image = client.get(submitted["response_url"]).json()["image"]

    fetched = httpx.get(image["url"], verify=False)  # public, like fal's CDN: no key needed
    assert fetched.status_code == 200
    assert fetched.headers["content-type"] == "image/png"
    assert int(fetched.headers["content-length"]) == image["file_size"] == len(fetched.content)
    assert httpx.get(image["url"] + "x", verify=False).status_code == 404
