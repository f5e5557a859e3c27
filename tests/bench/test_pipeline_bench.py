"""bench/pipeline.py: what ends its wait and what it judges (bench/pipeline_units.py), and
the benchmark itself at a tiny size, run as a user runs it, in its own process (the
suite's own settings must not leak into the bench's stack)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.common import WrkResult
from bench.pipeline_units import EVENTS, TARGETS_MS, PerUnit, all_done, per_unit, unaccounted
from falbridge.devstack.services import find_pg_bin

ROOT = Path(__file__).resolve().parents[2]
OURS = ("FALBRIDGE_", "FAL_", "REDIS_URL", "DATABASE_URL", "PUBLIC_BASE_URL")


def _counts(**overrides):
    done = {
        "terminal": 10,
        "completed": 10,
        "callbacks_verified": 10,
        "result_files": 10,
        "files_recorded": 10,
        "files_stored": 10,
        "events": 20,
        "events_delivered": 20,
    }
    return {**done, **overrides}


def test_the_wait_ends_only_with_every_job_file_and_event_done():
    assert all_done(_counts(), 10, EVENTS)
    assert not all_done(_counts(terminal=9, completed=9, events=18, events_delivered=18), 10, EVENTS)
    assert not all_done(_counts(files_recorded=9), 10, EVENTS)
    # The last files event not written yet, or written and not delivered yet.
    assert not all_done(_counts(events=19, events_delivered=19), 10, EVENTS)
    assert not all_done(_counts(events_delivered=19), 10, EVENTS)
    # A failed job has one event (no files); every transition's event, when listed.
    assert all_done(
        _counts(completed=9, result_files=9, files_recorded=9, events=19, events_delivered=19), 10, EVENTS
    )
    assert not all_done(_counts(events=30, events_delivered=29), 10, ("job.status_changed",))


def test_cpu_is_counted_per_unit_and_every_missed_target_is_named():
    before = {"receiver": 1.0, "worker": 2.0, "worker#2": 0.0, "postgres": 1.0, "sandbox": 0.0}
    after = {
        "receiver": 1.01,
        "worker": 2.03,
        "worker#2": 0.02,
        "postgres": 1.01,
        "sandbox": 5.0,
        "subscriber": 0.4,
    }
    units = per_unit(before, after, _counts(callbacks_verified=5), 10)
    assert units.falbridge_per_job == 6.0  # receiver 10 ms + both workers 50 ms, over 10 jobs
    assert units.receiver_per_callback == 2.0  # over the 5 verified callbacks
    assert units.postgres_per_job == 1.0
    assert units.sandbox_per_job == 500.0 and units.subscriber_per_event == 20.0  # apart: no target
    assert units.missed() == []
    worse = PerUnit(**{**units.__dict__, "falbridge_per_job": 7.01, "postgres_per_job": 2.5})
    assert worse.missed() == ["falbridge_per_job=7.01>7ms", "postgres_per_job=2.50>2ms"]
    assert set(TARGETS_MS) == {"falbridge_per_job", "receiver_per_callback", "postgres_per_job"}


def test_a_job_file_or_event_left_undone_is_a_problem_named():
    posted = WrkResult(
        sent=10,
        non_2xx=0,
        seconds=1.0,
        p50_ms=1,
        p90_ms=1,
        p99_ms=1,
        errors={},
        generator_cpu_s=0,
        complete=True,
    )
    assert unaccounted(posted, _counts(), 10, EVENTS) == []
    assert unaccounted(posted, _counts(files_stored=9), 10, EVENTS) == [
        "9 files stored of 10 (a file per job expected)"
    ]
    assert unaccounted(posted, _counts(events_delivered=19), 10, EVENTS) == [
        "19/20 events delivered when the wait ended"
    ]
    short = WrkResult(**{**posted.__dict__, "sent": 9, "non_2xx": 1})
    assert unaccounted(
        short,
        _counts(
            completed=9, result_files=9, files_recorded=9, files_stored=9, events=19, events_delivered=19
        ),
        10,
        EVENTS,
    ) == [
        "API answered 9/10 (1 non-2xx, errors {})",
        "9/10 completed",
    ]


@pytest.mark.slow
@pytest.mark.timeout(420)
@pytest.mark.skipif(find_pg_bin() is None, reason="needs PostgreSQL's server binaries")
def test_the_benchmark_stores_every_file_and_delivers_every_event(tmp_path):
    env = {name: value for name, value in os.environ.items() if not name.startswith(OURS)}
    env["BENCH_DIR"] = str(tmp_path)
    command = [sys.executable, "bench/pipeline.py", "--jobs", "20", "--warmup", "5", "--noop-tasks", "50"]
    command += ["--concurrency", "2", "--connections", "4"]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=400)
    line = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    # 1: a CPU target missed, which at this size (fixed costs over 20 jobs) is expected.
    assert done.returncode in (0, 1), done.stdout[-2000:] + done.stderr[-3000:]
    assert line.startswith("pipeline: jobs=") and "completed=20/20 files=20/20 events=40/40" in line
    assert "falbridge/job=" in line and "receiver/callback=" in line and "postgres/job=" in line
    (report,) = tmp_path.glob("*-pipeline/pipeline.json")
    details = json.loads(report.read_text())
    assert details["problems"] == []
    assert details["database"]["callbacks_verified"] == 20
    assert details["subscription"] == {"events": list(EVENTS), "made_by": "POST /api/subscriptions"}
    assert (done.returncode == 0) == (details["targets_missed"] == [])
    assert len(list(tmp_path.glob("*-pipeline/files/**/*.png"))) == 20 + 5
