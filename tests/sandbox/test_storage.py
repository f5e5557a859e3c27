"""fal's storage API in the sandbox, and what the official client needs of the queue API:
URLs that keep the caller's scheme and host, Bearer credentials, the synchronous run path,
and results that expire as fal's do (docs/fal-protocol.md, "Upload API", "Result")."""

from __future__ import annotations

import hashlib

import httpx
import pytest

from falbridge.sandbox.server import SandboxServer
from tests.plugins.sandbox import TEST_FAL_KEY, sandbox_test_config
from tests.plugins.waiting import poll_until
from tests.sandbox.helpers import ECHO, EVF_SAM, png_bytes, submit


@pytest.fixture
def client(sandbox):
    with sandbox.client() as c:
        yield c


def cdn_token(client, url):
    response = client.post(f"{url}/storage/auth/token", params={"storage_type": "fal-cdn-v3"}, json={})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "Bearer" and body["base_url"] == url
    assert body["expires_at"].endswith("+00:00")
    return {"Authorization": f"Bearer {body['token']}"}


def test_a_whole_upload_is_served_back_and_readable_by_the_models(sandbox, client):
    image = png_bytes(40, 30)
    token = cdn_token(client, sandbox.url)
    headers = {**token, "Content-Type": "image/png", "X-Fal-File-Name": "../../etc/passwd cat.png"}
    uploaded = httpx.post(f"{sandbox.url}/files/upload", content=image, headers=headers)
    url = uploaded.json()["access_url"]
    assert url.startswith(f"{sandbox.url}/files/") and url.endswith("/passwd_cat.png")
    served = httpx.get(url)
    assert (served.content, served.headers["content-type"]) == (image, "image/png")

    submitted = submit(client, sandbox.url, EVF_SAM, {"prompt": "cat", "image_url": url}).json()
    sandbox.wait_idle()
    mask = client.get(submitted["response_url"]).json()["image"]
    assert mask["file_name"] == "mask.png"
    assert sandbox.request(submitted["request_id"])["input"]["image_url"] == url


def test_multipart_upload_joins_parts_in_order_and_checks_etags(sandbox, client):
    token = cdn_token(client, sandbox.url)
    begun = httpx.post(
        f"{sandbox.url}/files/upload/multipart",
        headers={**token, "Content-Type": "application/octet-stream", "X-Fal-File-Name": "big.bin"},
    ).json()
    base = f"{begun['access_url']}/multipart/{begun['uploadId']}"
    parts = [b"a" * 1000, b"b" * 1000, b"c" * 10]
    etags = {}
    for number in (3, 1, 2):  # parts may arrive in any order
        answer = httpx.put(f"{base}/{number}", content=parts[number - 1], headers=token)
        etags[number] = answer.headers["etag"]
    assert httpx.get(begun["access_url"]).status_code == 404  # not readable before complete

    wrong = [{"partNumber": 1, "etag": etags[2]}]
    assert httpx.post(f"{base}/complete", json={"parts": wrong}, headers=token).status_code == 400
    listed = [{"partNumber": n, "etag": etags[n]} for n in (2, 3, 1)]
    assert httpx.post(f"{base}/complete", json={"parts": listed}, headers=token).status_code == 200
    assert (
        hashlib.sha256(httpx.get(begun["access_url"]).content).digest()
        == hashlib.sha256(b"".join(parts)).digest()
    )


def test_presigned_upload_through_the_rest_api(sandbox, client):
    initiated = client.post(
        f"{sandbox.url}/storage/upload/initiate",
        params={"storage_type": "gcs"},
        json={"file_name": "x.png", "content_type": "image/png"},
    ).json()
    assert httpx.put(initiated["file_url"], content=b"nope").status_code == 403  # no upload secret
    assert httpx.put(initiated["upload_url"], content=b"data").status_code == 200
    assert httpx.get(initiated["file_url"]).content == b"data"


def test_uploads_need_a_cdn_token_and_the_token_a_key(sandbox, client):
    assert httpx.post(f"{sandbox.url}/files/upload", content=b"x").status_code == 401
    bad = {"Authorization": "Bearer not-a-token"}
    assert httpx.post(f"{sandbox.url}/files/upload", content=b"x", headers=bad).status_code == 401
    assert httpx.post(f"{sandbox.url}/storage/auth/token", json={}).status_code == 401


def test_unknown_storage_calls_are_404_never_a_queue_submit(sandbox, client):
    for path in ("/storage/upload/other", "/storage/auth/token/x", "/storage", "/files/unknown/x/y"):
        answer = client.post(f"{sandbox.url}{path}", json={})
        assert answer.status_code in (404, 405), path
    assert sandbox.ground_truth()["requests"] == []


def test_storage_faults_refuse_token_and_upload(sandbox, client):
    sandbox.set_faults(storage_auth_down=1.0)
    down = client.post(f"{sandbox.url}/storage/auth/token", json={})
    assert down.status_code == 503 and "unavailable" in down.json()["detail"]
    sandbox.set_faults(storage_auth_down=0.0, upload_refused=1.0, upload_refused_status=413)
    token = cdn_token(client, sandbox.url)
    refused = httpx.post(f"{sandbox.url}/files/upload", content=b"x", headers=token)
    assert refused.status_code == 413 and "refused" in refused.json()["detail"]


def test_urls_keep_the_scheme_and_host_the_caller_used(sandbox, client):
    forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "fal.example.test:8443"}
    submitted = client.post(f"{sandbox.url}/{ECHO}", json={}, headers=forwarded).json()
    for name in ("status_url", "response_url", "cancel_url"):
        assert submitted[name].startswith("https://fal.example.test:8443/acme/echo-model/requests/")
    status = client.get(
        f"{sandbox.url}/acme/echo-model/requests/{submitted['request_id']}/status", headers=forwarded
    )
    assert status.json()["status_url"].startswith("https://fal.example.test:8443/")

    hostile = client.post(f"{sandbox.url}/{ECHO}", json={}, headers={"X-Forwarded-Host": "a b/c"}).json()
    assert hostile["status_url"].startswith(f"{sandbox.url}/")


def test_bearer_credentials_are_accepted_like_keys(sandbox):
    with httpx.Client(headers={"Authorization": "Bearer a-login-token"}) as bearer:
        submitted = bearer.post(f"{sandbox.url}/{ECHO}", json={"n": 1})
        assert submitted.status_code == 200
        assert bearer.get(submitted.json()["status_url"]).status_code in (200, 202)


def test_the_synchronous_run_path_answers_the_model_output(sandbox, client):
    ran = client.post(f"{sandbox.url}/_run/{ECHO}", json={"n": 2})
    assert ran.status_code == 200
    assert ran.json() == {"endpoint_id": ECHO, "echo": {"n": 2}}
    invalid = client.post(f"{sandbox.url}/_run/{EVF_SAM}", json={})
    assert invalid.status_code == 422 and isinstance(invalid.json()["detail"], list)
    assert client.get(f"{sandbox.url}/_run/{ECHO}").status_code == 405


def test_large_results_expire_sooner_than_small_ones(sandbox, client):
    # fal: 1 h, 6 min from 10 KB; scaled so 6 min is 0.36 s and 1 h 3.6 s.
    sandbox.set_config(retention_scale=0.001)
    small = submit(client, sandbox.url, ECHO, {"text": "x"}).json()
    large = submit(client, sandbox.url, ECHO, {"text": "x" * 10_240}).json()
    sandbox.wait_idle()
    poll_until(lambda: client.get(large["response_url"]).status_code, lambda code: code == 404, timeout=5)
    assert client.get(small["response_url"]).status_code == 200
    assert sandbox.request(large["request_id"])["result_bytes"] >= 10_240
    assert client.get(large["status_url"]).json() == {"detail": "Request not found"}


def test_redeliveries_stop_once_the_result_is_gone(sandbox, client, webhook_sink):
    # Six minutes scaled to 36 ms: the first attempt fails, the retry would come after expiry.
    sandbox.set_config(retention_scale=0.0001, delivery_backoff_s=[0.2], delivery_attempts=10)
    webhook_sink.respond_with(*[500] * 10)
    large = submit(client, sandbox.url, ECHO, {"text": "x" * 10_240}, webhook=webhook_sink.url).json()
    sandbox.wait_idle()
    seen = sandbox.request(large["request_id"])
    assert seen["webhook_state"] == "failed" and len(seen["deliveries"]) == 1


def test_a_public_url_option_wins_over_the_callers_host():
    config = sandbox_test_config(public_url="https://fal.example.test/")
    with SandboxServer(config) as server, httpx.Client(headers={"Authorization": f"Key {TEST_FAL_KEY}"}) as c:
        submitted = c.post(f"{server.url}/{ECHO}", json={}, headers={"X-Forwarded-Host": "other:1"}).json()
        token = c.post(f"{server.url}/storage/auth/token", json={}).json()
    assert submitted["status_url"].startswith("https://fal.example.test/acme/echo-model/requests/")
    assert token["base_url"] == "https://fal.example.test"
