"""FALBRIDGE_REQUIRE_BROWSER=1 (as `.ci/run` sets it): a skipped browser test is a
failure, whatever skipped it; other skips stay skips, and without the variable a browser
test skips with its reason. Run in a pytest of its own, as CI would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
TESTS = """
import pytest

@pytest.mark.browser
def test_in_the_browser():
    pytest.skip("chromium: not found")

def test_elsewhere():
    pytest.skip("unrelated")
"""


def _run(tmp_path: Path, required: str | None) -> subprocess.CompletedProcess[str]:
    (tmp_path / "conftest.py").write_text(
        "from tests.plugins.browser import pytest_runtest_makereport  # noqa\n"
    )
    (tmp_path / "test_skips.py").write_text(TESTS)
    (tmp_path / "pytest.ini").write_text(
        "[pytest]\nmarkers =\n    browser: in Chromium\naddopts = --strict-markers\n"
    )
    # No plugin autoload: the inner run needs none, and loading them all is most of its time.
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
    env.pop("FALBRIDGE_REQUIRE_BROWSER", None)
    if required is not None:
        env["FALBRIDGE_REQUIRE_BROWSER"] = required
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-rA", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_without_the_requirement_a_browser_test_skips_with_its_reason(tmp_path):
    done = _run(tmp_path, None)
    assert done.returncode == 0, done.stdout
    assert "2 skipped" in done.stdout and "chromium: not found" in done.stdout


def test_under_the_requirement_a_skipped_browser_test_fails(tmp_path):
    done = _run(tmp_path, "1")
    assert done.returncode == 1, done.stdout
    assert "1 failed, 1 skipped" in done.stdout
    assert "FALBRIDGE_REQUIRE_BROWSER=1, yet this browser test was skipped: Skipped: chromium: not found" in (
        done.stdout
    )
