"""Waiting on a condition with a deadline: the one polling loop the tests use."""

from __future__ import annotations

import threading
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


def run_at_once(call: Callable[[], Any], times: int = 2, timeout: float = 60.0) -> list[Any]:
    """`call` in `times` threads released together (a barrier, not a sleep); their results,
    in the order they finished. A call that raised is raised here."""
    start = threading.Barrier(times, timeout=timeout)
    results: list[Any] = []
    errors: list[BaseException] = []

    def run() -> None:
        start.wait()
        try:
            results.append(call())
        except BaseException as exc:  # handed to the test, not lost in the thread
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(times)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    if errors:
        raise errors[0]
    assert len(results) == times, "a call did not finish in time"
    return results
