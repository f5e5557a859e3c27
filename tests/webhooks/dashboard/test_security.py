"""Hostile strings everywhere a job can carry them are shown escaped; every dashboard
response has a Content-Security-Policy without inline script; every action needs the
session's CSRF token, and without it nothing changes."""

from __future__ import annotations

import re

import pytest

from falbridge.models.db import transaction
from falbridge.models.inbox import store_rejected
from falbridge.models.jobs import get_job
from falbridge.models.tables import JobEvent
from tests.plugins.storage import cdn_file
from tests.webhooks.dashboard.helpers import (
    EVF_SAM,
    FLORENCE,
    completed,
    csrf_of,
    failed,
    florence_boxes,
    log_in,
    make_job,
)
from tests.worker.storage.helpers import png

SCRIPT = "<script>alert(1)</script>"
BREAKOUT = '"><img src=x onerror=alert(2)>'
HOSTILE = f"{SCRIPT}{BREAKOUT}"


@pytest.fixture
def browser(client):
    log_in(client)
    return client


def assert_escaped(text: str) -> None:
    assert SCRIPT not in text and "<img src=x" not in text and "onerror=alert(2)>" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text


def test_hostile_strings_in_every_field_are_shown_escaped(sandbox, browser):
    evf = make_job(
        EVF_SAM,
        {"prompt": HOSTILE, "image_url": "https://cdn.example.test/cat.png"},
        external_id=HOSTILE,
        metadata={HOSTILE: HOSTILE},
        request_id=f"req-{HOSTILE}",
    )
    completed(evf, {"image": cdn_file(sandbox, png(), file_name=HOSTILE, name="x.png")})
    flo = make_job(FLORENCE, {"image_url": "https://cdn.example.test/cat.png"}, external_id=f"flo{HOSTILE}")
    completed(flo, florence_boxes((1, 2, 3, 4, HOSTILE)))
    bad = make_job(EVF_SAM, external_id=f"bad{HOSTILE}")
    failed(bad, error=HOSTILE, error_type="fal_error")
    with transaction() as s:
        store_rejected(s, request_id=HOSTILE, code="bad_signature", reason=HOSTILE, headers={}, body=b"x")

    pages = [
        "/dashboard/jobs",
        f"/dashboard/jobs?q={SCRIPT}",
        f"/dashboard/jobs/{evf}",
        f"/dashboard/jobs/{flo}",
        f"/dashboard/jobs/{bad}",
        "/dashboard/failures",
    ]
    for url in pages:
        answer = browser.get(url)
        assert answer.status_code == 200, url
        assert_escaped(answer.text)
    flo_page = browser.get(f"/dashboard/jobs/{flo}").text
    assert (
        'data-label="&lt;script&gt;alert(1)&lt;/script&gt;&#34;&gt;&lt;img src=x onerror=alert(2)&gt;"'
        in flo_page
    )


def test_a_hostile_bad_parameter_is_named_escaped(browser):
    answer = browser.get(f"/dashboard/jobs?{SCRIPT}=1")
    assert answer.status_code == 422
    assert_escaped(answer.text)


def test_every_dashboard_response_has_a_strict_csp(sandbox, client):
    job_id = make_job(FLORENCE, {"image_url": "https://cdn.example.test/cat.png"})
    urls = [
        "/dashboard/login",
        "/dashboard/jobs",
        "/dashboard/static/dashboard.js",
        "/dashboard/static/dashboard.css",
        "/dashboard/no-such-page",
    ]
    before = [client.get(url) for url in urls]
    log_in(client)
    after = [client.get(url) for url in [*urls[1:], f"/dashboard/jobs/{job_id}", "/dashboard/failures"]]
    after.append(client.get("/dashboard/jobs/live?ids="))
    after.append(client.get("/dashboard/jobs?status=nope"))
    for answer in before + after:
        policy = answer.headers["Content-Security-Policy"]
        assert "script-src 'self';" in policy and "default-src 'none';" in policy
        assert "frame-ancestors 'none'" in policy and "style-src 'self';" in policy
        assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
        assert answer.headers["X-Content-Type-Options"] == "nosniff"


def test_pages_carry_no_inline_script_or_style(sandbox, browser):
    job_id = make_job(FLORENCE, {"image_url": "https://cdn.example.test/cat.png"})
    completed(job_id, florence_boxes((1, 2, 3, 4, "cat")))
    login_form = browser.application.test_client().get("/dashboard/login").text
    pages = [
        browser.get(url).text
        for url in ("/dashboard/jobs", f"/dashboard/jobs/{job_id}", "/dashboard/failures")
    ]
    for text in [login_form, *pages]:
        assert "<script>" not in text and "<style" not in text and " style=" not in text
        assert re.search(r"<[^>]*\son[a-z]+\s*=", text) is None  # no inline event handler
        assert '<script src="/dashboard/static/dashboard.js" defer></script>' in text


def _cancel(browser, job_id, **form):
    return browser.post(f"/dashboard/jobs/{job_id}/cancel", data=form)


@pytest.mark.parametrize("token", [None, "", "forged-token", "é-not-ascii"])
def test_an_action_without_the_sessions_csrf_token_is_400_and_changes_nothing(browser, token):
    job_id = make_job(EVF_SAM)
    form = {} if token is None else {"csrf_token": token}

    answer = _cancel(browser, job_id, **form)

    assert answer.status_code == 400
    assert "CSRF token" in answer.text
    with transaction() as s:
        job = get_job(s, job_id)
        assert job is not None and job.status == "pending" and job.cancel_requested_at is None


def test_a_csrf_failure_answers_json_to_a_client_asking_for_json(browser):
    job_id = make_job(EVF_SAM)
    answer = browser.post(f"/dashboard/jobs/{job_id}/cancel", headers={"Accept": "application/json"})
    assert answer.status_code == 400 and answer.json["error"]["code"] == "csrf_failed"


def test_another_sessions_token_is_refused(app, browser):
    job_id = make_job(EVF_SAM)
    other = app.test_client()
    log_in(other)
    foreign = csrf_of(other.get("/dashboard/jobs").text)
    assert foreign != csrf_of(browser.get("/dashboard/jobs").text)
    assert _cancel(browser, job_id, csrf_token=foreign).status_code == 400
    with transaction() as s:
        event_count = s.query(JobEvent).filter(JobEvent.job_id == job_id).count()
    assert event_count == 1


def test_login_and_logout_need_the_csrf_token_too(client):
    assert client.post("/dashboard/login", data={"token": "x"}).status_code == 400
    log_in(client)
    assert client.post("/dashboard/logout").status_code == 400
    assert client.get("/dashboard/jobs").status_code == 200  # still logged in
