"""`submit_batch` in process and over HTTP (falbridge.Client): the same jobs in, the same
results out, one per job in order; a refused job stores nothing and stops nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

import falbridge
from tests.plugins.pipeline import TEST_API_TOKEN

SOME = "fal-ai/some/model"


def test_results_come_in_order_with_the_jobs_or_their_errors(api, pipeline, tmp_path):
    jobs = [
        {"endpoint_id": SOME, "input": {"n": 1}, "external_id": "py-1", "options": {"priority": "low"}},
        {"endpoint_id": SOME, "input": {"n": 2}, "options": {"start_timeout": 1}},
        {"endpoint_id": SOME, "input": {"file": Path(tmp_path / "missing.png")}},
        {"endpoint_id": SOME, "input": {"n": 1}, "external_id": "py-1", "options": {"priority": "low"}},
        {"endpoint_id": SOME},
    ]
    results = api.submit_batch(jobs)
    assert [type(r) for r in results] == [falbridge.BatchResult] * 5
    first, timeout, missing, again, incomplete = results
    assert first.ok and first.created and first.job.options == {"priority": "low"}
    assert again.ok and not again.created and again.job.id == first.job.id
    assert (timeout.error["status"], timeout.error["code"]) == (422, "invalid_options")
    assert timeout.error["details"][0]["field"] == "options.start_timeout"
    assert (missing.error["code"], missing.job) == ("invalid_input", None)
    assert incomplete.error["status"] == 422 and not incomplete.ok
    assert first.to_json() == falbridge.BatchResult.from_json(first.to_json()).to_json()
    [done] = pipeline.wait_terminal(first.job.id)
    assert done.status == "completed"


def test_the_client_sends_any_number_in_chunks(pipeline):
    jobs = [{"endpoint_id": SOME, "input": {"n": n}} for n in range(7)]
    with falbridge.Client(pipeline.receiver_url, TEST_API_TOKEN) as client:
        results = client.submit_batch(jobs, chunk_size=3)  # three requests
        assert [r.job.input["n"] for r in results] == list(range(7))
        with pytest.raises(ValueError, match="chunk_size"):
            client.submit_batch(jobs, chunk_size=1001)
    pipeline.wait_terminal(*(r.job.id for r in results), timeout=60)


def test_in_process_more_than_1000_is_refused_whole(db_url):
    with pytest.raises(ValueError, match="at most 1000"):
        falbridge.submit_batch([{"endpoint_id": SOME, "input": {}}] * 1001)
