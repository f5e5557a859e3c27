"""fal's retention window (docs/reliability.md, "fal's retention window"): a result of
10 KB or more is kept six minutes after completion, so a job whose callback is dropped
must be polled and fetched inside that window, and a result fal no longer has ends the job
`result_expired`. The sandbox models the window; its `retention_scale` and the sweeper's
timings are scaled down by the same factor so the tests take seconds."""

from __future__ import annotations

import time

import pytest

from falbridge.config import SweepConfig
from falbridge.models.db import transaction
from falbridge.models.tables import Job
from falbridge.worker import inline
from falbridge.worker.actions import submit
from falbridge.worker.sweep import sweep
from tests.plugins.waiting import poll_until
from tests.webhooks.test_pipeline import _cat_uri

NOW = SweepConfig(
    pending_grace_s=0, delivery_grace_s=0, silent_after_s=0, poll_every_s=0, outcome_unknown_grace_s=0
)
# fal's 360 s become 18 s, the sweeper's defaults shrink with them (a 4.5 s bound): room
# for a loaded machine's scheduling, which does not shrink.
SCALE = 0.05
# For the negative: 3.6 s, so the sweeper slowed past it costs seconds.
SLOW_SCALE = 0.01


def scaled(settings: SweepConfig, factor: float) -> SweepConfig:
    """The sweeper's clocks multiplied by `factor` (what the sandbox's retention_scale does
    to fal's)."""
    clocks = ("interval_s", "pending_grace_s", "delivery_grace_s", "silent_after_s", "poll_every_s")
    return settings.model_copy(update={name: getattr(settings, name) * factor for name in clocks})


def _submit_large_with_dropped_callback(pipeline, retention_scale: float) -> Job:
    pipeline.sandbox.set_faults(large_result=1.0, drop_large_callbacks=1.0)
    pipeline.sandbox.set_config(retention_scale=retention_scale)
    job, _ = submit("fal-ai/evf-sam", {"prompt": "cat", "image_url": _cat_uri()})
    pipeline.wait_status(job.id, "submitted")
    return job


def _run_beat(pipeline, job_id, settings: SweepConfig, timeout: float) -> Job:
    """Sweep every `interval_s`, as `falbridge beat` does, until the job is final."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sweep(inline.run, settings)
        with transaction() as s:
            job = s.get(Job, job_id)
            final = job is not None and job.job_status.is_terminal
        if final:
            [job] = pipeline.wait_terminal(job_id)
            return job
        time.sleep(settings.interval_s)  # the beat's period, not a wait for an outcome
    raise AssertionError(f"job {job_id} not final within {timeout}s")


def _truth(pipeline) -> dict:
    [truth] = pipeline.sandbox.ground_truth()["requests"]
    return truth


def test_the_defaults_fetch_a_result_well_inside_fals_six_minutes():
    defaults = SweepConfig()
    assert defaults.fetch_bound_s() == 90.0
    assert defaults.fetch_bound_s() <= 120.0 < 360.0


def test_a_dropped_large_result_is_fetched_in_time_at_default_timings_scaled(pipeline):
    job = _submit_large_with_dropped_callback(pipeline, SCALE)
    settings = scaled(SweepConfig(), SCALE)

    final = _run_beat(pipeline, job.id, settings, timeout=30)

    truth = _truth(pipeline)
    assert truth["faults"] == ["large_result", "drop_large_callbacks"] and truth["webhook_state"] == "dropped"
    assert truth["expires_at"] - truth["completed_at"] == pytest.approx(360.0 * SCALE)
    assert final.status == "completed" and final.error_type is None
    assert len(final.result["sandbox_padding"]) >= 10 * 1024
    [last] = [event for event in final.events if event.to_status == "completed"]
    assert last.source == "poll"
    # Fetched within the bound (plus 3 s for a shared machine's scheduling), before expiry.
    fetched_after = last.at.timestamp() - truth["completed_at"]
    assert fetched_after < settings.fetch_bound_s() + 3.0 < 360.0 * SCALE


def test_a_sweeper_slower_than_the_window_finds_the_result_expired(pipeline):
    job = _submit_large_with_dropped_callback(pipeline, SLOW_SCALE)
    # First poll only after fal's (scaled) six minutes: the negative of the test above.
    settings = scaled(SweepConfig(silent_after_s=400.0), SLOW_SCALE)

    final = _run_beat(pipeline, job.id, settings, timeout=30)

    assert _truth(pipeline)["expired"] is True
    assert (final.status, final.error_type) == ("failed", "result_expired")
    assert "result expired at fal" in (final.error or "")
    assert final.events[-1].source == "poll"


def test_an_expired_result_ends_failed_result_expired_not_retried(pipeline):
    job = _submit_large_with_dropped_callback(pipeline, 0.0001)
    poll_until(lambda: _truth(pipeline), lambda truth: truth["expired"], timeout=10)

    report = sweep(inline.run, NOW)

    assert report.polled == 1
    [final] = pipeline.wait_terminal(job.id)
    assert (final.status, final.error_type) == ("failed", "result_expired")
    assert final.poll_attempts == 1
    assert sweep(inline.run, NOW).polled == 0  # final: nothing more to ask fal


def test_a_result_to_fetch_that_expired_ends_failed_result_expired(pipeline):
    # The callback came without its payload (fal's payload_error) and, by the time the
    # worker asks, fal no longer has the result: a 404 on the result itself.
    pipeline.sandbox.set_faults(payload_error=1.0, large_result=1.0)
    pipeline.sandbox.set_config(retention_scale=0.0)
    job, _ = submit("fal-ai/evf-sam", {"prompt": "cat", "image_url": _cat_uri()})

    [final] = pipeline.wait_terminal(job.id)

    assert (final.status, final.error_type) == ("failed", "result_expired")
    assert "404 for the result" in (final.error or "")
