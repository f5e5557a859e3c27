"""One job's page: the input image with EVF-SAM's mask laid over it (or the masked image
beside it), Florence-2's boxes with their pixel coordinates and labels, the timeline, fal's
status and logs (or why they are unavailable), result, files, deliveries and events; and
the file routes taking the session cookie so the images load."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import re

import httpx
import pytest

from falbridge.models.db import transaction
from falbridge.models.jobs import lock_job
from falbridge.worker.fal import client as fal_client
from falbridge.worker.fal.upload import Uploaded
from falbridge.worker.input_copies import keep_input_copy
from falbridge.worker.storage.store import store_files
from tests.plugins.sandbox import TEST_FAL_KEY
from tests.plugins.storage import cdn_file
from tests.webhooks.dashboard.helpers import (
    CAT,
    EVF_SAM,
    FLORENCE,
    completed,
    florence_boxes,
    log_in,
    make_job,
)
from tests.worker.storage.helpers import png


@pytest.fixture
def browser(client):
    log_in(client)
    return client


def img_src(page: str, testid: str) -> str | None:
    found = re.search(rf'<img data-testid="{testid}"[^>]* src="([^"]+)"', page)
    return found[1] if found else None


def csp(answer) -> str:
    return answer.headers["Content-Security-Policy"]


@pytest.mark.parametrize("storage", ["local"], indirect=True)
def test_the_evf_sam_mask_is_laid_over_the_input_from_the_stored_copy(sandbox, storage, browser):
    mask = png(40, 30)
    job_id = make_job(EVF_SAM, {"prompt": "cat", "image_url": CAT})
    completed(job_id, {"image": cdn_file(sandbox, mask, width=40, height=30)})
    store_files(job_id)

    answer = browser.get(f"/dashboard/jobs/{job_id}")
    page = answer.text

    stage = page[page.index('data-testid="image-stage"') :]
    assert img_src(stage, "input-image") == CAT
    overlay = img_src(stage, "mask-overlay")
    assert overlay is not None and overlay.startswith(f"/api/jobs/{job_id}/files/")
    assert 'type="range" data-testid="mask-opacity"' in page
    assert 'data-natural-width="40" data-natural-height="30"' in page
    assert 'data-testid="masked-image"' not in page
    # The cookie alone fetches the stored mask: an <img> sends no bearer token.
    served = browser.get(overlay)
    assert served.status_code == 200 and served.data == mask
    # The input's host is allowed for images, and nothing else from outside.
    assert "img-src 'self' https://cdn.example.test;" in csp(answer)


def test_with_mask_only_false_the_masked_image_is_beside_the_input(sandbox, browser):
    job_id = make_job(EVF_SAM, {"prompt": "cat", "image_url": CAT, "mask_only": False})
    completed(job_id, {"image": cdn_file(sandbox, png(4, 4), name="masked.png")})

    answer = browser.get(f"/dashboard/jobs/{job_id}")

    masked = img_src(answer.text, "masked-image")
    assert masked is not None and masked.startswith(sandbox.url)  # not stored: fal's URL
    assert img_src(answer.text, "input-image") == CAT
    assert 'data-testid="mask-overlay"' not in answer.text
    sandbox_origin = sandbox.url.rstrip("/")
    assert f"img-src 'self' {sandbox_origin} https://cdn.example.test;" in csp(answer)


def test_florence_boxes_carry_their_pixel_coordinates_and_labels(browser):
    job_id = make_job(FLORENCE, {"image_url": CAT})
    completed(job_id, florence_boxes((34.5, 120.0, 410.2, 233.7, "cat"), (0, 0, 10, 20, "")))

    page = browser.get(f"/dashboard/jobs/{job_id}").text

    boxes = re.findall(
        r'data-testid="bbox" data-label="([^"]*)" data-x="([^"]+)" data-y="([^"]+)" '
        r'data-w="([^"]+)" data-h="([^"]+)">\s*<span class="bbox-label">([^<]*)</span>',
        page,
    )
    assert boxes == [
        ("cat", "34.5", "120.0", "410.2", "233.7", "cat"),
        ("", "0.0", "0.0", "10.0", "20.0", ""),
    ]
    stage = page[page.index('data-testid="image-stage"') :]
    assert stage.index('data-testid="input-image"') < stage.index('data-testid="bbox"')


def test_boxes_that_are_not_numbers_are_left_out(browser):
    job_id = make_job(FLORENCE, {"image_url": CAT})
    bad = {"x": "1", "y": 0, "w": 1, "h": 1, "label": "string x"}
    completed(job_id, {"results": {"bboxes": [bad, {"x": True, "y": 0, "w": 1, "h": 1}, 7, None]}})
    page = browser.get(f"/dashboard/jobs/{job_id}")
    assert page.status_code == 200 and 'data-testid="bbox"' not in page.text


@pytest.mark.parametrize(
    "url", ["javascript:alert(1)", "file:///etc/passwd", "data:text/html,<b>x</b>", "/etc/x"]
)
def test_an_input_url_that_is_not_an_image_address_is_not_shown(browser, url):
    job_id = make_job(FLORENCE, {"image_url": url})
    answer = browser.get(f"/dashboard/jobs/{job_id}")
    assert answer.status_code == 200
    assert 'data-testid="input-image"' not in answer.text
    assert "img-src 'self';" in csp(answer)


def test_an_input_given_as_an_image_data_uri_is_shown_and_allowed(browser):
    uri = "data:image/png;base64,iVBORw0KGgo="
    job_id = make_job(FLORENCE, {"image_url": uri})
    answer = browser.get(f"/dashboard/jobs/{job_id}")
    assert img_src(answer.text, "input-image") == uri
    assert "img-src 'self' data:;" in csp(answer)


@pytest.mark.parametrize("storage", ["local"], indirect=True)
def test_an_uploaded_input_is_shown_from_falbridges_copy(storage, browser):
    data = png(9, 9)
    uploaded = Uploaded(
        "https://v3.fal.media/files/x.png", hashlib.sha256(data).hexdigest(), len(data), "image/png"
    )
    keep_input_copy(io.BytesIO(data), uploaded)  # what an upload through falbridge keeps
    sha = uploaded.sha256
    recorded = {"location": ["image_url"], **dataclasses.asdict(uploaded)}
    job_id = make_job(EVF_SAM, {"prompt": "cat", "image_url": recorded["url"]}, input_files=[recorded])

    answer = browser.get(f"/dashboard/jobs/{job_id}")

    src = img_src(answer.text, "input-image")
    assert src == f"/api/jobs/{job_id}/inputs/{sha}"
    served = browser.get(src)
    assert served.status_code == 200 and served.data == data
    assert served.headers["Content-Type"] == "image/png"
    # Only digests this job recorded: not any object of the store.
    assert browser.get(f"/api/jobs/{job_id}/inputs/{'0' * 64}").status_code == 404
    other = make_job(EVF_SAM)
    assert browser.get(f"/api/jobs/{other}/inputs/{sha}").status_code == 404


def test_the_page_shows_timeline_result_files_and_sections(sandbox, browser):
    job_id = make_job(EVF_SAM, metadata={"customer": "c-17"})
    completed(job_id, {"image": cdn_file(sandbox, png(3, 3), file_name="mask-17.png")})

    page = browser.get(f"/dashboard/jobs/{job_id}").text

    timeline = page[page.index('data-testid="timeline"') : page.index('data-testid="fal-logs"')]
    assert timeline.count('data-testid="timeline-event"') == 2
    assert 'data-source="api"' in timeline and 'data-source="webhook"' in timeline
    for section in ("fal-logs", "result-json", "files", "deliveries", "events"):
        assert f'data-testid="{section}"' in page
    assert "mask-17.png" in page and "c-17" in page
    assert "Not asked: the job is not at fal yet" in page or "the job is finished" in page
    assert 'data-testid="cancel-job"' not in page  # finished: nothing to cancel


def test_the_page_shows_the_jobs_fal_options(browser):
    plain = browser.get(f"/dashboard/jobs/{make_job(EVF_SAM)}").text
    assert 'data-testid="options-json"' not in plain
    job_id = make_job(EVF_SAM, options={"priority": "low", "tags": {"team": "vision"}})
    page = browser.get(f"/dashboard/jobs/{job_id}").text
    shown = page[page.index('data-testid="options-json"') :]
    assert "&#34;priority&#34;: &#34;low&#34;" in shown[:300] and "vision" in shown[:300]


def test_fal_logs_are_read_from_fal_while_the_job_runs(sandbox, browser, monkeypatch):
    monkeypatch.setenv("FAL_QUEUE_URL", sandbox.url)
    monkeypatch.setenv("FAL_KEY", TEST_FAL_KEY)
    fal_client.close_client()
    try:
        answer = httpx.post(
            f"{sandbox.url}/fal-ai/some/model",
            json={"n": 1},
            headers={"Authorization": f"Key {TEST_FAL_KEY}"},
            timeout=10,
        ).json()
        job_id = make_job("fal-ai/some/model", {"n": 1}, status="submitted", request_id=answer["request_id"])
        with transaction() as s:
            job = lock_job(s, job_id)
            assert job is not None
            job.status_url, job.response_url = answer["status_url"], answer["response_url"]

        page = browser.get(f"/dashboard/jobs/{job_id}").text
    finally:
        fal_client.close_client()

    logs = page[page.index('data-testid="fal-logs"') : page.index('data-testid="result-json"')]
    assert "fal says" in logs and "unavailable" not in logs


def test_fal_out_of_reach_is_shown_as_unavailable(browser, monkeypatch):
    monkeypatch.setenv("FAL_QUEUE_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("FAL_KEY", TEST_FAL_KEY)
    fal_client.close_client()
    try:
        job_id = make_job(EVF_SAM, status="submitted", request_id="req-unreachable")
        with transaction() as s:
            job = lock_job(s, job_id)
            assert job is not None
            job.status_url = "http://127.0.0.1:9/fal-ai/evf-sam/requests/req-unreachable/status"
        answer = browser.get(f"/dashboard/jobs/{job_id}")
    finally:
        fal_client.close_client()
    assert answer.status_code == 200
    assert 'data-testid="fal-unavailable"' in answer.text


def test_an_unknown_or_ambiguous_job_is_a_page_naming_it(browser):
    assert browser.get("/dashboard/jobs/00000000-0000-0000-0000-000000000000").status_code == 404
    missing = browser.get("/dashboard/jobs/nope")
    assert missing.status_code == 404 and "no job with id" in missing.text
