"""`falbridge demo --keep-running`: the stack stays up, the dashboard answers at the URL
the demo printed, and Ctrl-C stops every process the demo started, exit 0."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import psutil
import pytest

from tests.plugins.waiting import poll_until

# What a fresh shell carries; nothing of this session's fixtures (their REDIS_URL,
# DATABASE_URL, fal settings) may reach the demo, which must use its embedded default.
KEPT = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR")
DASHBOARD_LINE = re.compile(r"Dashboard: (http://127\.0\.0\.1:\d+/dashboard/) \(up until Ctrl-C\)")


def _lines(stream, into: queue.Queue[str]) -> None:
    for line in stream:
        into.put(line)
    into.put("")  # end of output


def _wait_for_dashboard_line(lines: queue.Queue[str], seen: list[str], timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=deadline - time.monotonic())
        except queue.Empty:
            break
        if line == "":
            break
        seen.append(line)
        if match := DASHBOARD_LINE.search(line):
            return match.group(1)
    raise AssertionError("the demo printed no dashboard URL:\n" + "".join(seen))


def _ours(var_dir: Path) -> list[psutil.Process]:
    """Live processes that run from, or name, the demo's directory (the embedded Redis)."""
    found = []
    for proc in psutil.process_iter(["cmdline", "cwd", "status"]):
        info = proc.info
        if info["status"] == psutil.STATUS_ZOMBIE:
            continue
        words = " ".join(info["cmdline"] or []) + " " + (info["cwd"] or "")
        if str(var_dir) in words:
            found.append(proc)
    return found


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_keep_running_serves_the_dashboard_until_ctrl_c(tmp_path):
    env = {name: os.environ[name] for name in KEPT if name in os.environ}
    env["FALBRIDGE_VAR_DIR"] = str(tmp_path / "var")
    demo = subprocess.Popen(
        [sys.executable, "-m", "falbridge", "demo", "--batch", "0", "--keep-running"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=_lines, args=(demo.stdout, lines), daemon=True).start()
    seen: list[str] = []
    try:
        url = _wait_for_dashboard_line(lines, seen, timeout=180)
        page = poll_until(lambda: httpx.get(url, follow_redirects=True), lambda r: r.status_code == 200, 30)
        assert 'data-testid="job-row"' in page.text  # the demo's jobs, listed
        children = psutil.Process(demo.pid).children(recursive=True)
        assert children, "the demo's stack runs as child processes"

        demo.send_signal(signal.SIGINT)
        assert demo.wait(timeout=60) == 0, "".join(seen)
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
    _, alive = psutil.wait_procs(children, timeout=10)
    assert alive == [], f"left behind: {alive}"
    assert _ours(tmp_path) == []
    with pytest.raises(httpx.ConnectError):
        httpx.get(url)
