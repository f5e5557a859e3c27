"""The retry schedule: Svix's, about a day, scaled, jittered, Retry-After honoured."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

from falbridge.worker.notify.schedule import MAX_ATTEMPTS, SCHEDULE_S, next_wait, retry_after

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def test_eight_attempts_over_about_a_day():
    assert MAX_ATTEMPTS == 8 and SCHEDULE_S[0] == 0
    assert 24 * 3600 <= sum(SCHEDULE_S) <= 30 * 3600
    assert list(SCHEDULE_S) == sorted(SCHEDULE_S)


def test_each_wait_is_its_slot_with_jitter_and_the_last_attempt_ends_it():
    for made in range(1, MAX_ATTEMPTS):
        waits = {next_wait(made, 1.0) for _ in range(20)}
        assert all(0.8 * SCHEDULE_S[made] <= w <= 1.2 * SCHEDULE_S[made] for w in waits)
        assert len(waits) > 1  # jittered
    assert next_wait(MAX_ATTEMPTS, 1.0) is None


def test_the_scale_shrinks_the_whole_schedule():
    assert next_wait(2, 0.001) <= 1.2 * SCHEDULE_S[2] * 0.001


def test_retry_after_is_honoured_up_to_a_scaled_cap():
    assert next_wait(1, 1.0, retry_after_s=120) >= 120
    assert next_wait(1, 1.0, retry_after_s=10**9) <= 3600
    assert next_wait(1, 0.01, retry_after_s=10**9) <= 36


def test_retry_after_read_only_on_429_and_503():
    assert retry_after(429, "7", NOW) == 7
    assert retry_after(503, format_datetime(NOW + timedelta(seconds=90), usegmt=True), NOW) == 90
    assert retry_after(500, "7", NOW) is None
    assert retry_after(429, "soon", NOW) is None
    assert retry_after(429, None, NOW) is None
