"""bench/history.py at a small size, in the suite: the listing's index claims (README,
"Performance") are checked on every run, not only when someone runs `make bench`."""

import json

import pytest

from bench import history
from falbridge.devstack.services import find_pg_bin

pytestmark = pytest.mark.skipif(find_pg_bin() is None, reason="needs PostgreSQL's server binaries")


def test_every_listing_uses_its_index_and_deep_pages_cost_what_first_pages_do(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_DIR", str(tmp_path))
    line, _target_met = history.run(rows=30_000, seconds=0.0, min_samples=3, deep=1_000)

    assert line.startswith("history: rows=30000 ")
    (report,) = tmp_path.glob("*-history/history.json")
    results = {r["name"]: r for r in json.loads(report.read_text())["results"]}
    assert len(results) == 11
    for name, r in results.items():
        plan = r["plan"]
        # An index gives the order: no sort (but above the unique external_id lookup),
        # no sequential scan; and every page but the external_id one is full.
        assert plan["ok"], (name, plan["summary"])
        assert r["rows"] == (1 if name.startswith("external_id") else history.PAGE + 1), name
    for name in ("all", "status", "endpoint_id", "created_after", "created_before"):
        first, deep = results[f"{name}/first"]["plan"], results[f"{name}/deep"]["plan"]
        # Keyset pagination: 1,000 rows deep reads no more pages than the first page does.
        assert deep["buffers"] <= first["buffers"] * 1.5 + 5, (name, first["summary"], deep["summary"])
