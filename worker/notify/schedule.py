"""When to try a delivery again: Svix's schedule, about a day from the first attempt to
the last, scaled by FALBRIDGE_NOTIFY_SCHEDULE_SCALE, each wait with jitter. A subscriber's
Retry-After (on 429 and 503) is honoured: the next attempt waits at least that long, up
to a cap (an hour, scaled the same way)."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

# The wait before each attempt: the first at once, the eighth and last ~27 h later.
SCHEDULE_S = (0.0, 5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)
MAX_ATTEMPTS = len(SCHEDULE_S)
JITTER = 0.2  # each wait is its scheduled length, plus or minus 20 %
RETRY_AFTER_CAP_S = 3600.0
RETRY_AFTER_STATUSES = frozenset({429, 503})


def next_wait(attempts_made: int, scale: float, retry_after_s: float | None = None) -> float | None:
    """Seconds until the next attempt after `attempts_made` failed ones; None when that
    was the last (the delivery is exhausted)."""
    if attempts_made >= MAX_ATTEMPTS:
        return None
    wait = SCHEDULE_S[attempts_made] * scale * random.uniform(1 - JITTER, 1 + JITTER)
    if retry_after_s is not None:
        wait = max(wait, min(retry_after_s, RETRY_AFTER_CAP_S * scale))
    return wait


def retry_after(status_code: int | None, value: str | None, now: datetime) -> float | None:
    """Seconds a 429 or 503 asks us to wait (delta-seconds or an HTTP date); None
    otherwise or when it can't be read."""
    if status_code not in RETRY_AFTER_STATUSES or not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())
