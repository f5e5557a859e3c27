"""bench/outgoing.py at a tiny size, in the suite: the delivery benchmark's line (`make
bench`) keeps working, and both phases really reach the subscriber, signed. Run as a user
runs it, in its own process: the suite's own settings (its Redis, its secret key) must not
leak into the bench's stack."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from falbridge.devstack.services import find_pg_bin

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(find_pg_bin() is None, reason="needs PostgreSQL's server binaries")
OURS = ("FALBRIDGE_", "FAL_", "REDIS_URL", "DATABASE_URL", "PUBLIC_BASE_URL")


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_the_delivery_benchmark_delivers_every_event_once_in_both_phases(tmp_path):
    env = {name: value for name, value in os.environ.items() if not name.startswith(OURS)}
    command = [sys.executable, "bench/outgoing.py", "--events", "30", "--concurrency", "2", "--warmup", "5"]
    env["BENCH_DIR"] = str(tmp_path)
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=280)
    line = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert line.startswith("outgoing: events=") and " ratio=" in line and "delivered=30/30" in line
    (report,) = tmp_path.glob("*-outgoing/outgoing.json")
    details = json.loads(report.read_text())
    assert details["falbridge"]["delivered"] == 30 and details["falbridge"]["attempts"] == 30
    assert details["bare"]["received"] == 30
    # Both phases sent the same 30 event ids, after a warm-up of 5 (sent by each too).
    assert details["subscriber"]["received"] == 2 * 35 and details["subscriber"]["distinct"] == 35
    assert details["subscriber"]["bad_signatures"] == 0
    assert details["subscription_made_by"] == "worker.notify.manage.create"
