"""The job list: the API's filters and `q`, keyset pages through the next-page link, counts
per status under the other filters, the live endpoint, and bad parameters named."""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime

import pytest

from tests.webhooks.dashboard.helpers import EVF_SAM, FLORENCE, log_in, make_job, make_jobs

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
_ROW = re.compile(r'<tr data-testid="job-row" data-job-id="([0-9a-f-]+)" data-status="([a-z_]+)"')
_COUNT = re.compile(r'data-testid="status-count" data-status="([a-z_]+)">[a-z_]+ <b>(\d+)</b>')
_NEXT = re.compile(r'<a href="([^"]+)" data-testid="next-page"')


@pytest.fixture
def browser(client):
    log_in(client)
    return client


def rows(page) -> list[tuple[str, str]]:
    assert page.status_code == 200, page.text[:500]
    return _ROW.findall(page.text)


def ids(page) -> list[str]:
    return [job_id for job_id, _ in rows(page)]


def counts(page) -> dict[str, int]:
    return {status: int(n) for status, n in _COUNT.findall(page.text)}


def next_link(page) -> str | None:
    found = _NEXT.search(page.text)
    return html.unescape(found[1]) if found else None


def test_jobs_are_listed_newest_first_with_their_status(browser):
    older = make_job(created_at=T0, status="completed")
    newer = make_job(created_at=T0.replace(hour=13))
    assert rows(browser.get("/dashboard/jobs")) == [(str(newer), "pending"), (str(older), "completed")]


def test_keyset_pages_walk_every_job_once_and_the_last_has_no_next_link(browser):
    made = make_jobs(7, T0)
    seen, url, pages = [], "/dashboard/jobs?limit=3&endpoint_id=" + EVF_SAM, 0
    while url:
        page = browser.get(url)
        seen += ids(page)
        url, pages = next_link(page), pages + 1
        assert "limit=3" in (url or "limit=3") and "endpoint_id=" in (url or "endpoint_id=")
    assert pages == 3
    assert seen == [str(job_id) for job_id in reversed(made)]


def test_filters_by_status_endpoint_external_id_and_created_range(browser):
    evf = make_job(created_at=T0, external_id="evf-1")
    flo = make_job(FLORENCE, created_at=T0.replace(hour=14), external_id="flo-1", status="completed")
    assert ids(browser.get("/dashboard/jobs?status=completed")) == [str(flo)]
    assert ids(browser.get(f"/dashboard/jobs?endpoint_id={EVF_SAM}")) == [str(evf)]
    assert ids(browser.get("/dashboard/jobs?external_id=flo-1")) == [str(flo)]
    assert ids(browser.get("/dashboard/jobs?created_after=2024-05-01T13:00:00Z")) == [str(flo)]
    assert ids(browser.get("/dashboard/jobs?created_before=2024-05-01T13:00:00Z")) == [str(evf)]
    # An empty field is "not given", as the form sends it.
    assert len(ids(browser.get("/dashboard/jobs?status=&endpoint_id=&q="))) == 2


def test_free_text_matches_part_of_the_external_id_or_request_id_in_any_case(browser):
    by_external = make_job(external_id="Order-4711-cat", created_at=T0)
    by_request = make_job(request_id="req-ABC-4711", created_at=T0.replace(hour=13))
    make_job(external_id="order-9999", created_at=T0.replace(hour=14))
    assert ids(browser.get("/dashboard/jobs?q=4711")) == [str(by_request), str(by_external)]
    assert ids(browser.get("/dashboard/jobs?q=ORDER-4711")) == [str(by_external)]
    assert ids(browser.get("/dashboard/jobs?q=abc-47")) == [str(by_request)]
    # LIKE's wildcards are matched literally, not as patterns.
    assert ids(browser.get("/dashboard/jobs?q=%25")) == []
    assert ids(browser.get("/dashboard/jobs?q=order_4711")) == []


def test_counts_per_status_follow_the_other_filters_not_the_status(browser):
    make_jobs(2, T0, status="completed")
    make_jobs(1, T0, status="failed")
    make_jobs(3, T0, endpoint_id=FLORENCE, status="completed")
    page = browser.get(f"/dashboard/jobs?endpoint_id={EVF_SAM}&status=failed")
    assert counts(page) == {
        "pending": 0,
        "outcome_unknown": 0,
        "submitted": 0,
        "in_progress": 0,
        "completed": 2,
        "failed": 1,
        "cancelled": 0,
    }
    assert len(ids(page)) == 1
    whole = counts(browser.get("/dashboard/jobs"))
    assert whole["completed"] == 5 and sum(whole.values()) == 6


def test_the_filter_form_shows_what_was_asked(browser):
    page = browser.get("/dashboard/jobs?q=needle&status=failed&endpoint_id=fal-ai%2Fevf-sam")
    form = page.text[page.text.index('data-testid="job-filters"') :]
    form = form[: form.index("</form>")]
    assert 'name="q" value="needle"' in form
    assert '<option value="failed" selected>' in form
    assert 'name="endpoint_id" value="fal-ai/evf-sam"' in form
    for name in ("status", "endpoint_id", "external_id", "created_after", "created_before", "limit", "q"):
        assert f'name="{name}"' in form


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("status=nope", "status"),
        ("limit=0", "limit"),
        ("created_after=yesterday", "created_after"),
        ("cursor=bm90IGEgY3Vyc29y", "cursor"),
        ("colour=red", "colour"),
        ("q=" + "x" * 300, "q"),
        ("q=a&q=b", "q"),
    ],
)
def test_bad_parameters_are_a_422_page_naming_them(browser, query, field):
    page = browser.get(f"/dashboard/jobs?{query}")
    assert page.status_code == 422
    assert field in page.text and 'data-testid="error"' in page.text


def test_the_live_endpoint_reports_current_statuses(browser):
    running = make_job(status="in_progress")
    done = make_job(status="completed")
    answer = browser.get(f"/dashboard/jobs/live?ids={running},{done},00000000-0000-0000-0000-000000000000")
    found = answer.json["jobs"]
    assert {k: (v["status"], v["terminal"]) for k, v in found.items()} == {
        str(running): ("in_progress", False),
        str(done): ("completed", True),
    }
    assert browser.get("/dashboard/jobs/live?ids=nope").status_code == 422
    assert browser.get("/dashboard/jobs/live?ids=" + ",".join([str(running)] * 101)).status_code == 422


def test_unfinished_rows_are_marked_for_polling_and_finished_ones_not(browser):
    running = make_job(status="in_progress")
    done = make_job(status="completed")
    page = browser.get("/dashboard/jobs").text
    assert f'data-job-id="{running}" data-status="in_progress" data-live="1"' in page
    assert f'data-job-id="{done}" data-status="completed">' in page
    assert 'src="/dashboard/static/dashboard.js"' in page
