"""A 50 MB result file is streamed from fal's CDN into the backend, never held whole: the
storing step runs in a process of its own, and its peak RSS may grow by at most 20 MiB
(issue 15). Measured as the peak RSS (VmHWM, reset after a warm-up store in the same
process), so the figure is the store's own."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.plugins.storage import cdn_file
from tests.worker.storage.helpers import completed_job, png, records

pytestmark = [
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self"),
    pytest.mark.slow,
    pytest.mark.usefixtures("db_url"),
]

MIB = 1024 * 1024
FILE_BYTES = 50 * MIB
MAX_GROWTH = 20 * MIB

# Linux: writing 5 to clear_refs resets the peak RSS (VmHWM) to the current RSS, so the
# peak read afterwards is the peak of the store alone, not of the imports before it.
_MEASURE = """
import json, sys
from pathlib import Path
from falbridge.worker.storage.store import store_files

def kib(field):
    line = next(l for l in Path("/proc/self/status").read_text().splitlines() if l.startswith(field))
    return int(line.split()[1]) * 1024

warm = store_files(sys.argv[1])  # imports, connections, the backend's client: all warmed up
Path("/proc/self/clear_refs").write_text("5")
before = kib("VmHWM:")
report = store_files(sys.argv[2])
after = kib("VmHWM:")
print(json.dumps({"warm": warm.stored, "stored": report.stored, "before": before, "after": after}))
"""


def test_a_50_mb_file_is_stored_within_20_mib_of_rss(sandbox, storage):
    warm_up = completed_job({"image": cdn_file(sandbox, png())})
    # Not compressible into anything small on the way, and different in every chunk.
    big = os.urandom(FILE_BYTES)
    job_id = completed_job({"video": cdn_file(sandbox, big, "big.mp4", "video/mp4")})
    del big

    done = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(warm_up), str(job_id)],
        capture_output=True,
        text=True,
        timeout=300,
        env=os.environ.copy(),
        check=False,
    )

    assert done.returncode == 0, done.stderr[-2000:]
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    growth = measured["after"] - measured["before"]
    print(f"\n{storage.kind}: peak RSS {measured['before'] / MIB:.1f} -> {measured['after'] / MIB:.1f} MiB")
    assert (measured["warm"], measured["stored"]) == (1, 1)
    assert growth <= MAX_GROWTH, f"RSS grew by {growth / MIB:.1f} MiB storing {FILE_BYTES / MIB:.0f} MiB"
    [row] = records(job_id)
    assert (row.status, row.size) == ("stored", FILE_BYTES)
