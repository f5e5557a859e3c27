"""Logging in and out, and nothing readable without it: every dashboard route, the live
endpoint and the file routes. API auth off (the embedded demo) opens it under the banner."""

from __future__ import annotations

import pytest

from falbridge.webhooks.api.auth import OFF_WARNING
from falbridge.webhooks.app import create_app
from tests.plugins.pipeline import API_HEADERS, TEST_API_TOKEN, TEST_SECRET_KEY
from tests.webhooks.dashboard.helpers import csrf_of, log_in, make_job

OTHER_TOKEN = "falbridge-OTHER-API-TOKEN-77aa0c3b5e"


def _pages(job_id) -> list[str]:
    return [
        "/dashboard/jobs",
        f"/dashboard/jobs/{job_id}",
        f"/dashboard/jobs/{str(job_id)[:8]}",
        "/dashboard/failures",
        "/dashboard/jobs?status=pending&q=x",
    ]


def test_every_page_sends_a_stranger_to_the_login_form(client):
    job_id = make_job(external_id="secret-order-42")
    for page in _pages(job_id):
        answer = client.get(page)
        assert answer.status_code == 302, page
        assert answer.headers["Location"].startswith("/dashboard/login?next=/dashboard/"), page
        assert "secret-order-42" not in answer.text
    assert client.get("/dashboard/").headers["Location"] == "/dashboard/login?next=/dashboard/"


def test_the_live_endpoint_answers_a_stranger_401_json(client):
    job_id = make_job()
    answer = client.get(f"/dashboard/jobs/live?ids={job_id}")
    assert answer.status_code == 401
    assert answer.json["error"]["code"] == "unauthorized"
    assert "pending" not in answer.text


def test_a_bearer_token_is_not_a_dashboard_session(client):
    # The dashboard is for people: scripts use the API.
    answer = client.get("/dashboard/jobs", headers=API_HEADERS)
    assert answer.status_code == 302


def test_logging_in_with_an_api_token_opens_the_dashboard(client):
    job_id = make_job(external_id="first-job")
    answer = log_in(client)
    assert answer.status_code == 303 and answer.headers["Location"] == "/dashboard/jobs"
    cookie = answer.headers["Set-Cookie"]
    assert cookie.startswith("falbridge_dashboard=") and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert TEST_API_TOKEN not in cookie
    for page in _pages(job_id):
        assert client.get(page).status_code == 200, page
    assert client.get("/dashboard/").headers["Location"] == "/dashboard/jobs"
    live = client.get(f"/dashboard/jobs/live?ids={job_id}")
    assert live.json == {
        "jobs": {
            str(job_id): {
                "status": "pending",
                "updated_at": live.json["jobs"][str(job_id)]["updated_at"],
                "terminal": False,
            }
        }
    }


def test_login_returns_to_the_page_asked_for_but_never_elsewhere(client):
    job_id = make_job()
    form = client.get(f"/dashboard/login?next=/dashboard/jobs/{job_id}")
    answer = client.post(
        "/dashboard/login",
        data={"token": TEST_API_TOKEN, "csrf_token": csrf_of(form.text), "next": f"/dashboard/jobs/{job_id}"},
    )
    assert answer.headers["Location"] == f"/dashboard/jobs/{job_id}"
    client.post("/dashboard/logout", data={"csrf_token": csrf_of(client.get("/dashboard/jobs").text)})
    for elsewhere in ("https://evil.example/", "//evil.example/dashboard/", "/api/jobs", "/dashboard/\\evil"):
        form = client.get("/dashboard/login")
        answer = client.post(
            "/dashboard/login",
            data={"token": TEST_API_TOKEN, "csrf_token": csrf_of(form.text), "next": elsewhere},
        )
        assert answer.headers["Location"] == "/dashboard/jobs", elsewhere
        client.post("/dashboard/logout", data={"csrf_token": csrf_of(client.get("/dashboard/jobs").text)})


@pytest.mark.parametrize("token", ["wrong-token", "", f"{TEST_API_TOKEN}x", "<script>alert(1)</script>"])
def test_a_wrong_token_is_a_401_page_and_no_session(client, token):
    answer = log_in(client, token)
    assert answer.status_code == 401
    assert "that token is not accepted" in answer.text
    assert "Set-Cookie" not in answer.headers
    assert "<script>alert(1)</script>" not in answer.text
    assert client.get("/dashboard/jobs").status_code == 302


def test_logging_out_ends_the_session(client):
    log_in(client)
    page = client.get("/dashboard/jobs")
    answer = client.post("/dashboard/logout", data={"csrf_token": csrf_of(page.text)})
    assert answer.status_code == 303 and answer.headers["Location"] == "/dashboard/login"
    assert client.get("/dashboard/jobs").status_code == 302


def test_a_session_ends_when_its_token_is_removed(client, monkeypatch):
    log_in(client)
    cookie = client.get_cookie("falbridge_dashboard")
    assert cookie is not None
    # The same deployment (same secret key, var dir) after the token was rotated out.
    monkeypatch.setenv("FALBRIDGE_API_TOKENS", OTHER_TOKEN)
    rotated = create_app().test_client()
    rotated.set_cookie("falbridge_dashboard", cookie.value)
    assert rotated.get("/dashboard/jobs").status_code == 302
    # while one of a rotation's tokens still logs the session in
    monkeypatch.setenv("FALBRIDGE_API_TOKENS", f"{OTHER_TOKEN},{TEST_API_TOKEN}")
    both = create_app().test_client()
    both.set_cookie("falbridge_dashboard", cookie.value)
    assert both.get("/dashboard/jobs").status_code == 200


def test_a_forged_cookie_is_no_session(client):
    client.set_cookie("falbridge_dashboard", '{"token_tag": "00"}')
    assert client.get("/dashboard/jobs").status_code == 302


def test_with_api_auth_off_the_dashboard_is_open_under_the_banner(db_url, redis_url, monkeypatch, tmp_path):
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("FALBRIDGE_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("FALBRIDGE_API_AUTH", "off")
    monkeypatch.setenv("FALBRIDGE_SECRET_KEY", TEST_SECRET_KEY)
    open_client = create_app().test_client()
    job_id = make_job()
    for page in _pages(job_id):
        answer = open_client.get(page)
        assert answer.status_code == 200, page
        assert 'data-testid="auth-off-banner"' in answer.text and OFF_WARNING in answer.text
    assert open_client.get("/dashboard/login").status_code == 302
