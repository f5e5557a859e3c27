"""bench/purge.py at a small size, in the suite: the retention benchmark's line keeps
working, and the batched purge leaves exactly the rows one DELETE with cascades leaves.
Run as a user runs it, in its own process, without the suite's settings."""

import os
import re
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
def test_the_purge_benchmark_removes_what_one_delete_removes(tmp_path):
    env = {name: value for name, value in os.environ.items() if not name.startswith(OURS)}
    env["BENCH_DIR"] = str(tmp_path)
    command = [sys.executable, "bench/purge.py", "--jobs", "1000", "--batch", "300"]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=280)
    line = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert re.match(r"purge: jobs=1000 rate=\d+/s \(.*\) baseline=\d+/s \(.*\) ratio=[\d.]+ ", line), line
    assert " batches=4 batch=300 kept=100/100 PASS" in line
