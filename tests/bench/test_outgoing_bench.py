"""bench/outgoing.py at a tiny size, in the suite: the delivery benchmark's line (`make
bench`) keeps working, and both phases really reach the subscriber, signed."""

import json

import pytest

from bench import outgoing
from falbridge.devstack.services import find_pg_bin

pytestmark = pytest.mark.skipif(find_pg_bin() is None, reason="needs PostgreSQL's server binaries")


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_the_delivery_benchmark_delivers_every_event_once_in_both_phases(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_DIR", str(tmp_path))
    line, ok = outgoing.run(events=30, concurrency=2, warmup=5)

    assert ok, line
    assert line.startswith("outgoing: events=") and " ratio=" in line and "delivered=30/30" in line
    (report,) = tmp_path.glob("*-outgoing/outgoing.json")
    details = json.loads(report.read_text())
    assert details["falbridge"]["delivered"] == 30 and details["falbridge"]["attempts"] == 30
    assert details["bare"]["received"] == 30
    # Both phases sent the same 30 event ids, after a warm-up of 5 (sent by each too).
    assert details["subscriber"]["received"] == 2 * 35 and details["subscriber"]["distinct"] == 35
    assert details["subscriber"]["bad_signatures"] == 0
    assert details["subscription_made_by"] == "worker.notify.manage.create"
