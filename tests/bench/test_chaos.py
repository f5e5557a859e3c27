"""The chaos run in small: a few hundred jobs through the sandbox with every fault on,
worker processes SIGKILLed, Redis and the receiver restarted once each, and a webhook
subscriber that fails a share of its deliveries and goes away once; then every job must
be terminal and agree with the sandbox's ground truth (bench/chaos_report.py), and every
job event must have reached the subscriber, signed, the last one each job's final state
(bench/chaos_events.py).

Same code as `make chaos`, called in-process; the services are real child processes.
PostgreSQL when its binaries are installed, else SQLite.
"""

from __future__ import annotations

import json

import pytest

from bench.chaos import ChaosOptions, run_chaos
from bench.chaos_config import Timings
from tests.plugins.db import PG_BIN


@pytest.mark.slow
@pytest.mark.timeout(420)  # a safety net only: 1-3 minutes here, by how busy the machine is
def test_small_chaos_run_loses_nothing_and_applies_nothing_twice(tmp_path):
    options = ChaosOptions(
        jobs=200,
        seed=7,
        kill_every_s=3.0,
        min_kills=2,
        max_kills=4,
        timeout_s=120.0,
        database="postgresql" if PG_BIN else "sqlite",
        rate=20.0,
        max_in_flight=100,
        run_dir=tmp_path / "chaos",
        timings=Timings.fast(),
        echo=False,
    )
    result = run_chaos(options)
    report = result.report
    details = json.dumps(
        {
            "mismatches": report.mismatches[:10],
            "duplicate_rows": report.duplicate_rows[:10],
            "events": {k: v[:10] for k, v in result.events.problems().items()},
            "problems": result.problems,
        },
        indent=1,
        default=str,
    )
    assert result.ok, "\n".join(result.lines) + "\n" + details
    assert report.terminal == report.jobs == 200
    assert not report.mismatches and not report.duplicate_rows
    assert result.kills >= 2 and result.redis_restarts == 1 and result.receiver_restarts == 1
    # The faults really happened: fal refused some submits and its webhooks were retried.
    assert report.rejected_submits > 0 and report.deliveries > report.sandbox_requests
    # fal's retention window (scaled with the sweeper, Timings.retention_scale): large
    # results lost their callback, and the sweeper fetched every one in time, files stored.
    assert report.large_dropped > 0 and report.result_expired == 0
    assert report.large_dropped_stored == report.large_dropped
    # Outgoing: one terminal event per job, every event at the subscriber at least once,
    # through its faults (each kind drawn) and its outage.
    events = result.events
    # Each job has its pending and its terminal event at least (a refused submit skips submitted).
    assert events.ok and events.terminal_events == 200 and events.events >= 2 * 200
    assert events.delivered == events.events and not events.lost and events.bad_signatures == 0
    assert events.unsettled == 0 and events.outages == 1
    assert set(events.faults) == {"error_500", "slow", "drop", "throttle_429"}
    assert events.attempts > events.delivered
