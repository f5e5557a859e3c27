"""Waiting on a condition with a deadline: the one polling loop the tests use."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

POLL_INTERVAL_S = 0.02


def poll_until(
    fetch: Callable[[], Any],
    accept: Callable[[Any], bool],
    timeout: float = 5.0,
    describe: Callable[[Any], str] | None = None,
) -> Any:
    """Call `fetch` until `accept(result)` and return that result; after `timeout` seconds
    fail with `describe(last result)`, or the result itself."""
    deadline = time.monotonic() + timeout
    while True:
        result = fetch()
        if accept(result):
            return result
        if time.monotonic() > deadline:
            detail = describe(result) if describe else f"last: {result!r}"
            raise AssertionError(f"condition not reached within {timeout}s; {detail}")
        time.sleep(POLL_INTERVAL_S)
