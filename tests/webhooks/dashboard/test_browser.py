"""The dashboard in a real browser (headless Chromium through Selenium), against the real
stack: jobs go through the sandbox as fal, the Celery worker and the receiver, on SQLite
and PostgreSQL. What is checked is what a person sees: rows, counts, pages, the mask laid
over the picture, one rectangle per box at the box's place, a cancel that takes."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.select import Select

from falbridge.demo import CAT
from falbridge.worker.actions import cancel, submit
from tests.plugins.browser import Dashboard

pytestmark = [pytest.mark.browser, pytest.mark.slow]

EVF_SAM = "fal-ai/evf-sam"
FLORENCE = "fal-ai/florence-2-large/region-proposal"
OTHER = "fal-ai/some/other-model"
UNREACHABLE = "http://127.0.0.1:9/missing.png"  # fal cannot fetch it: the job fails
PX = 1.5  # rendering rounds to device pixels; a misplaced box is off by far more


def _rect(page: Dashboard, element: Any) -> dict[str, float]:
    return page.script(
        "const r = arguments[0].getBoundingClientRect();"
        "return {x: r.left, y: r.top, w: r.width, h: r.height};",
        element,
    )


def _loaded(page: Dashboard, css: str) -> Any:
    """The image once the browser has decoded it (its natural size is known)."""

    def decoded() -> Any:
        found = page.find_all(css)
        if found and page.script("return arguments[0].complete && arguments[0].naturalWidth > 0;", found[0]):
            return found[0]
        return None

    return page.wait(decoded, f"{css} loaded")


def _row_ids(page: Dashboard) -> list[str]:
    """Read in one script call, so the rows come from one document: found one by one, a row
    of the page a submitted filter form is leaving goes stale between finding and reading."""
    rows: list[str] = page.script(
        "return Array.from(document.querySelectorAll('tr[data-testid=\"job-row\"]'),"
        " row => row.getAttribute('data-job-id'));"
    )
    return rows


def _filter(page: Dashboard, **values: str) -> None:
    """Fill the filter form as a person would and send it."""
    form = page.find('form[data-testid="job-filters"]')
    for name, value in values.items():
        field = form.find_element("css selector", f'[name="{name}"]')
        if field.tag_name == "select":
            Select(field).select_by_value(value)
        else:
            field.clear()
            field.send_keys(value)
    form.submit()


@pytest.fixture
def picture(tmp_path: Path) -> Path:
    """The demo's cat at twice its size (512 px): drawn at its natural size in the default
    window, scaled down in a narrow one."""
    path = tmp_path / "cat-512.png"
    with Image.open(CAT) as cat:
        cat.resize((cat.width * 2, cat.height * 2), Image.Resampling.BICUBIC).save(path)
    return path


def _done(page: Dashboard, *jobs: Any) -> list[Any]:
    return page.pipeline.wait_terminal(*(job.id for job in jobs), timeout=30)


def test_the_list_filters_counts_and_pages(dashboard):
    completed = [submit(OTHER, {"n": i}, external_id=f"order-{i}")[0] for i in range(4)]
    failed = submit(EVF_SAM, {"prompt": "cat", "image_url": UNREACHABLE}, external_id="broken-1")[0]
    jobs = _done(dashboard, *completed, failed)
    assert [j.status for j in jobs] == ["completed"] * 4 + ["failed"]
    every = {str(j.id) for j in jobs}

    dashboard.open("/dashboard/jobs")
    assert set(_row_ids(dashboard)) == every
    counts = {
        c.get_attribute("data-status"): c.text for c in dashboard.find_all('[data-testid="status-count"]')
    }
    assert re.search(r"\b4\b", counts["completed"]) and re.search(r"\b1\b", counts["failed"]), counts
    dashboard.shot("job-list")

    _filter(dashboard, status="failed")
    dashboard.wait(lambda: _row_ids(dashboard) == [str(failed.id)], "only the failed job listed")
    assert "status=failed" in dashboard.driver.current_url

    dashboard.open("/dashboard/jobs")
    _filter(dashboard, endpoint_id=OTHER)
    dashboard.wait(lambda: set(_row_ids(dashboard)) == {str(j.id) for j in completed}, "the endpoint's jobs")

    dashboard.open("/dashboard/jobs")
    _filter(dashboard, q="order-2")  # free text: an external id
    dashboard.wait(lambda: _row_ids(dashboard) == [str(completed[2].id)], "the job of external id order-2")
    _filter(dashboard, q=jobs[3].request_id)  # free text: fal's request id
    dashboard.wait(lambda: _row_ids(dashboard) == [str(completed[3].id)], "the job of that request id")

    # The failures view lists the failed job, and from it a click opens the job's page.
    dashboard.open("/dashboard/failures")
    assert _row_ids(dashboard) == [str(failed.id)]
    dashboard.find(f'tr[data-job-id="{failed.id}"] a').click()
    dashboard.wait(
        lambda: dashboard.driver.current_url.endswith(f"/dashboard/jobs/{failed.id}"), "the job page"
    )
    assert "file_download_error" in dashboard.find('[data-testid="job-error"]').text
    unloaded = dashboard.console_errors()  # its input image is the URL fal could not fetch either
    assert unloaded and all(error.startswith(UNREACHABLE) for error in unloaded), unloaded

    # Keyset pages of two: every job once, in three pages, the last without a next link.
    dashboard.open("/dashboard/jobs?limit=2")
    seen: list[str] = []
    for _ in range(len(every)):
        page_ids = _row_ids(dashboard)
        assert 0 < len(page_ids) <= 2
        seen += page_ids
        following = dashboard.find_all('a[data-testid="next-page"]')
        if not following:
            break
        following[0].click()
        dashboard.wait(lambda page_ids=page_ids: _row_ids(dashboard) != page_ids, "the next page")
    assert sorted(seen) == sorted(every) and len(seen) == len(every)


def test_an_evf_sam_mask_lies_over_its_image_and_the_slider_fades_it(dashboard, picture):
    job = submit(EVF_SAM, {"prompt": "Cat in the middle of the image", "image_url": picture})[0]
    masked = submit(EVF_SAM, {"prompt": "cat", "image_url": picture, "mask_only": False})[0]
    assert [j.status for j in _done(dashboard, job, masked)] == ["completed", "completed"]

    dashboard.open(f"/dashboard/jobs/{job.id}")
    stage = dashboard.find('[data-testid="image-stage"]')
    picture = _loaded(dashboard, '[data-testid="image-stage"] img[data-testid="input-image"]')
    mask = _loaded(dashboard, '[data-testid="image-stage"] img[data-testid="mask-overlay"]')
    assert stage.is_displayed() and mask.is_displayed()
    under, over = _rect(dashboard, picture), _rect(dashboard, mask)
    assert under["w"] > 0 and under["h"] > 0
    for side in ("x", "y", "w", "h"):
        assert over[side] == pytest.approx(under[side], abs=PX), (side, over, under)

    slider = dashboard.find('input[type="range"][data-testid="mask-opacity"]')

    def opacity() -> float:
        return float(dashboard.script("return getComputedStyle(arguments[0]).opacity;", mask))

    slider.send_keys(Keys.END)
    dashboard.wait(lambda: opacity() > 0.9, "the mask opaque at the slider's top")
    dashboard.shot("evf-sam-mask-overlay-opaque")
    slider.send_keys(Keys.HOME)
    dashboard.wait(lambda: opacity() < 0.1, "the mask faded out at the slider's bottom")
    for _ in range(5):
        slider.send_keys(Keys.ARROW_RIGHT)
    dashboard.wait(lambda: 0 < opacity() < 1, "the mask part-transparent in between")
    halfway = dashboard.script(
        "const s = arguments[0]; s.value = (Number(s.min) + Number(s.max)) / 2;"
        "s.dispatchEvent(new Event('input', {bubbles: true})); return s.value;",
        slider,
    )
    dashboard.wait(lambda: 0.3 < opacity() < 0.7, f"the mask half-transparent at {halfway}")
    dashboard.shot("evf-sam-mask-overlay")

    # mask_only=false: fal's answer is a masked picture, shown beside the input, not over it.
    dashboard.open(f"/dashboard/jobs/{masked.id}")
    picture = _loaded(dashboard, 'img[data-testid="input-image"]')
    beside = _loaded(dashboard, 'img[data-testid="masked-image"]')
    left, right = _rect(dashboard, picture), _rect(dashboard, beside)
    apart = (
        left["x"] + left["w"] <= right["x"] + PX
        or right["x"] + right["w"] <= left["x"] + PX
        or left["y"] + left["h"] <= right["y"] + PX
        or right["y"] + right["h"] <= left["y"] + PX
    )
    assert apart, f"the masked image {right} overlaps the input {left}"
    dashboard.shot("evf-sam-masked-image")


def _check_boxes(page: Dashboard, boxes: list[dict[str, Any]]) -> float:
    """Check every box is drawn where it is; returns the image's rendered/natural scale."""
    picture = _loaded(page, '[data-testid="image-stage"] img[data-testid="input-image"]')
    drawn = page.find_all('[data-testid="bbox"]')
    assert len(drawn) == len(boxes), f"{len(drawn)} rectangles drawn for {len(boxes)} boxes"
    image = _rect(page, picture)
    natural_w, natural_h = page.script(
        "return [arguments[0].naturalWidth, arguments[0].naturalHeight];", picture
    )
    sx, sy = image["w"] / natural_w, image["h"] / natural_h
    expected = sorted(
        (image["x"] + b["x"] * sx, image["y"] + b["y"] * sy, b["w"] * sx, b["h"] * sy, b["label"])
        for b in boxes
    )
    found = sorted(
        (r["x"], r["y"], r["w"], r["h"], element.get_attribute("data-label"))
        for element in drawn
        for r in [_rect(page, element)]
    )
    for want, got in zip(expected, found, strict=True):
        assert got[:4] == pytest.approx(want[:4], abs=PX), f"box drawn at {got}, expected {want}"
        assert got[4] == want[4]
    for element in drawn:
        assert element.is_displayed()
        label = element.get_attribute("data-label")
        if label:
            assert label in element.text, f"label {label!r} not shown"
    return sx


def test_florence_boxes_are_drawn_where_the_boxes_are(dashboard, picture):
    job = submit(FLORENCE, {"image_url": picture})[0]
    [job] = _done(dashboard, job)
    assert job.status == "completed", job.error
    boxes = job.result["results"]["bboxes"]
    assert boxes

    dashboard.open(f"/dashboard/jobs/{job.id}")
    assert _check_boxes(dashboard, boxes) == pytest.approx(1.0)
    dashboard.shot("florence-boxes")
    # The boxes are in the image's own pixels: in a narrower window the image is drawn
    # smaller, and every box with it.
    size = dashboard.driver.get_window_size()
    dashboard.driver.set_window_size(480, size["height"])
    try:
        scale = dashboard.wait(
            lambda: (s := _check_boxes(dashboard, boxes)) < 0.95 and s, "the image scaled down"
        )
        assert 0.3 < scale < 0.95
        dashboard.shot("florence-boxes-narrow")
    finally:
        dashboard.driver.set_window_size(size["width"], size["height"])


def _status_of(page: Dashboard, job_id: Any) -> str | None:
    rows = page.find_all(f'tr[data-testid="job-row"][data-job-id="{job_id}"]')
    return rows[0].get_attribute("data-status") if rows else None


def test_running_jobs_update_live_and_cancel_through_the_button(dashboard):
    sandbox = dashboard.pipeline.sandbox
    # Queued at fal until cancelled: fal withdraws a queued request at once, while a running
    # one would finish its run first.
    sandbox.set_config(queue_latency_s=120.0)
    try:
        watched = submit(EVF_SAM, {"prompt": "cat", "image_url": CAT})[0]
        clicked = submit(EVF_SAM, {"prompt": "ears", "image_url": CAT})[0]
        for job in (watched, clicked):
            dashboard.pipeline.wait_status(job.id, "submitted", "in_progress")

        # The list follows a running job without being reloaded (its short polling).
        dashboard.open("/dashboard/jobs")
        dashboard.script("window.notReloaded = true;")
        assert _status_of(dashboard, watched.id) in ("submitted", "in_progress")
        cancel(watched.id)
        dashboard.wait(lambda: _status_of(dashboard, watched.id) == "cancelled", "the row turned cancelled")
        assert dashboard.script("return window.notReloaded === true;"), "the page was reloaded"

        dashboard.open(f"/dashboard/jobs/{clicked.id}")
        button = dashboard.find('button[data-testid="cancel-job"]')
        form = button.find_element("xpath", "./ancestor::form")
        assert form.get_attribute("method").lower() == "post"
        assert form.find_elements("css selector", 'input[type="hidden"]'), "no CSRF token in the form"
        button.click()
        flash = dashboard.wait(lambda: dashboard.find_all('[data-testid="flash"]'), "a flash message")[0]
        assert dashboard.driver.current_url.endswith(f"/dashboard/jobs/{clicked.id}")
        dashboard.shot("cancel-flash")
        assert flash.text
        [job] = dashboard.pipeline.wait_terminal(clicked.id, timeout=30)
        assert job.status == "cancelled"

        dashboard.open(f"/dashboard/jobs/{clicked.id}")
        timeline = dashboard.find('[data-testid="timeline"]')
        assert "cancelled" in timeline.text
    finally:
        sandbox.set_config(queue_latency_s=0.0)


def test_logging_in_with_an_api_token(dashboard):
    dashboard.log_out()
    dashboard.open("/dashboard/jobs")
    assert not dashboard.find_all('form[data-testid="job-filters"]'), "the job list shown without login"

    dashboard.log_in("not-the-token-at-all-0123456789")
    refused: list[str] = []  # the 401 of the wrong token, and nothing else

    def answered() -> bool:  # the form's POST has its answer: the console has the 401
        refused.extend(dashboard.console_errors())
        return any("401" in error for error in refused)

    dashboard.wait(answered, "the wrong token's 401")
    assert len(refused) == 1 and "/dashboard/login" in refused[0], refused
    assert dashboard.find_all('input[type="password"][name="token"]'), "a wrong token left the login form"
    assert not dashboard.find_all('form[data-testid="job-filters"]')

    dashboard.log_in()
    dashboard.wait(lambda: dashboard.find_all('form[data-testid="job-filters"]'), "the job list after login")
