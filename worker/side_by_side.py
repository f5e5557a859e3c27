"""Running one step for each of a commit's rows in one task, a few at a time.

A commit that completes a batch of jobs (the inbox drain, the batched submit) makes one
outgoing delivery per event and one store run per job. Handed to the broker one task
each, the broker's round trip cost more of the worker's CPU than many of the steps
themselves (bench/pipeline.py's profile: about a fifth of it, with four tasks a job). So
the rows of one commit go as one task, and the task runs their steps side by side in a
few threads: a slow subscriber or download holds up its own thread, not the batch.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

log = logging.getLogger(__name__)

Item = TypeVar("Item")
Result = TypeVar("Result")

# Threads per batch task: each holds a database connection while its step records.
PARALLEL = 4
# Rows per task: a commit's rows beyond it go as further tasks, run by other workers.
CHUNK = 50


def chunks(items: Sequence[Item], size: int = CHUNK) -> Iterator[list[Item]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


def run_each(
    items: Sequence[Item], step: Callable[[Item], Result], parallel: int = PARALLEL
) -> list[tuple[Item, Result | None]]:
    """(item, result) for each item, in order; None where the step raised (logged: the
    sweeper finds that row again, as it would after a failed task of its own)."""

    def guarded(item: Item) -> Result | None:
        try:
            return step(item)
        except Exception:
            log.exception("%s failed for %s", getattr(step, "__name__", "step"), item)
            return None

    if len(items) <= 1 or parallel <= 1:
        return [(item, guarded(item)) for item in items]
    # Each step in a copy of the caller's context: what the caller set for its steps
    # (falbridge.models.after_commit's holding of dispatches) holds in the threads too.
    contexts = [contextvars.copy_context() for _ in items]
    with ThreadPoolExecutor(min(parallel, len(items)), thread_name_prefix="falbridge-batch") as pool:
        results = pool.map(lambda pair: pair[0].run(guarded, pair[1]), zip(contexts, items, strict=True))
        return list(zip(items, results, strict=True))
