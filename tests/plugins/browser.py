"""Headless Chromium for the dashboard's tests, driven by Selenium with Debian's packages.

- `browser` (session): one Chromium for the whole session (`chromium` and its
  version-matched `chromium-driver`; never a driver selenium-manager would download).
- `dashboard` (function): that browser pointed at the receiver of the `pipeline` fixture
  (the Flask app over real HTTP, a Celery worker, the sandbox as fal, on both databases),
  logged in, with a `shot(name)` that saves a screenshot into the test's output.

Tests marked `browser` skip with the reason when the browser cannot start, unless
FALBRIDGE_REQUIRE_BROWSER=1 (as `.ci/run` sets it): then that is a failure, and so is any
skip of a browser test, whatever raised it.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.plugins.pipeline import TEST_API_TOKEN, Pipeline
from tests.plugins.waiting import poll_until

__all__ = [
    "BROWSER_REQUIRED",
    "Dashboard",
    "browser",
    "dashboard",
    "pytest_addoption",
    "pytest_runtest_makereport",
    "screenshot_dir",
]

BROWSER_REQUIRED = os.environ.get("FALBRIDGE_REQUIRE_BROWSER") == "1"
CHROMIUM = ("chromium", "/usr/bin/chromium")
CHROMEDRIVER = ("chromedriver", "/usr/bin/chromedriver")
WINDOW = (1280, 1000)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--screenshots",
        metavar="DIR",
        default=None,
        help="save the browser tests' screenshots in DIR (default: each test's tmp_path)",
    )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    # A skip raised anywhere (a fixture, a missing binary, a missing database server) would
    # let CI pass without a browser having run: where the browser is required, it fails.
    report: pytest.TestReport = yield
    if BROWSER_REQUIRED and report.skipped and item.get_closest_marker("browser") is not None:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"FALBRIDGE_REQUIRE_BROWSER=1, yet this browser test was skipped: {reason}"
    return report


def _unavailable(reason: str) -> None:
    message = f"headless Chromium unavailable: {reason}"
    if BROWSER_REQUIRED:
        pytest.fail(f"{message} (FALBRIDGE_REQUIRE_BROWSER=1)", pytrace=False)
    pytest.skip(f"{message} (on Debian: apt-get install chromium chromium-driver)")


def _find(candidates: tuple[str, ...]) -> str | None:
    for candidate in candidates:
        found = shutil.which(candidate)
        if found:
            return found
    return None


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    try:
        from selenium import webdriver
        from selenium.common.exceptions import WebDriverException
    except ImportError as exc:
        _unavailable(f"selenium is not installed ({exc})")
    chromium, chromedriver = _find(CHROMIUM), _find(CHROMEDRIVER)
    if chromium is None or chromedriver is None:
        _unavailable(f"chromium: {chromium or 'not found'}, chromedriver: {chromedriver or 'not found'}")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in (
        "--headless=new",
        "--no-sandbox",  # as root, Chromium's sandbox refuses to start
        "--disable-dev-shm-usage",  # containers' /dev/shm is small
        "--disable-gpu",
        "--force-device-scale-factor=1",  # CSS pixels = screenshot pixels
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
    ):
        options.add_argument(argument)
    # The console's errors (a script that threw, a Content-Security-Policy violation, an
    # image that did not load) are read back after each test.
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = webdriver.ChromeService(executable_path=chromedriver)
    try:
        driver = webdriver.Chrome(options=options, service=service)
    except WebDriverException as exc:
        _unavailable(f"{chromium} with {chromedriver} did not start: {exc.msg}")
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def screenshot_dir(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    chosen = request.config.getoption("--screenshots")
    if chosen is None:
        return tmp_path
    where = Path(chosen)
    where.mkdir(parents=True, exist_ok=True)
    return where


class Dashboard:
    """The session's browser on one test's stack: pages by path, waits on conditions."""

    def __init__(self, driver: Any, base_url: str, pipeline: Pipeline, shots: Path) -> None:
        self.driver = driver
        self.base_url = base_url
        self.pipeline = pipeline
        self.shots = shots

    def open(self, path: str) -> None:
        self.driver.get(self.base_url + path)

    def find(self, css: str) -> Any:
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.CSS_SELECTOR, css)

    def find_all(self, css: str) -> list[Any]:
        from selenium.webdriver.common.by import By

        return list(self.driver.find_elements(By.CSS_SELECTOR, css))

    def wait(self, condition: Callable[[], Any], what: str, timeout: float = 15.0) -> Any:
        """Poll `condition` (a page's state, read through the browser) until it is truthy."""
        return poll_until(condition, bool, timeout, lambda last: f"{what}; at {self.driver.current_url}")

    def script(self, source: str, *args: Any) -> Any:
        return self.driver.execute_script(source, *args)

    def shot(self, name: str) -> Path:
        path = self.shots / f"{name}.png"
        assert self.driver.save_screenshot(str(path)), f"no screenshot saved at {path}"
        return path

    def log_in(self, token: str = TEST_API_TOKEN) -> None:
        self.open("/dashboard/login")
        field = self.find('form input[type="password"][name="token"]')
        field.send_keys(token)
        field.submit()

    def logged_in(self) -> bool:
        """Whether the job list shows (a page without a session is the login form)."""
        self.open("/dashboard/jobs")
        return bool(self.find_all('form[data-testid="job-filters"]'))

    def console_errors(self) -> list[str]:
        """The console's errors since the last call (Chromium asks every origin for a
        favicon, which the dashboard does not have: not an error of the page)."""
        return [
            entry["message"]
            for entry in self.driver.get_log("browser")
            if entry["level"] == "SEVERE" and "favicon.ico" not in entry["message"]
        ]

    def log_out(self) -> None:
        self.driver.delete_all_cookies()


@pytest.fixture
def dashboard(browser: Any, pipeline: Pipeline, screenshot_dir: Path) -> Iterator[Dashboard]:
    """Logged in once per session: the cookie is signed with the session's secret key, so
    it holds across tests and across both databases."""
    page = Dashboard(browser, pipeline.receiver_url, pipeline, screenshot_dir)
    if not page.logged_in():
        page.log_in()
        page.wait(page.logged_in, "the login led to the job list")
    page.console_errors()  # what came before this test is not its own
    yield page
    errors = page.console_errors()
    assert errors == [], f"the browser's console reported errors: {errors}"
