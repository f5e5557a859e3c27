"""What the receiver does after verifying a callback, compared by CPU in one session:
enqueue a task per delivery, wake the inbox drain (a Redis flag, one publish per drain),
or apply the delivery in the receiver's own transaction; and the pool's pre-ping on or off.

    python bench/receiver_paths.py [--deliveries 4000] [--drain-every 50]

One process (this one) on a real PostgreSQL and redis-server does each path's work the
way the receiver does it after verification (which every path shares): store the
delivery in a transaction of its own, then the path's step. Paths take turns in four
rounds (ABCD DCBA ...), each on fresh jobs, so none is always first; figures are CPU ms per
delivery of this process (the receiver's share) and of PostgreSQL's processes, summed
over the rounds, and ratios against enqueue-per-delivery, today's path, taken in the
same run. Compare ratios only within one run: the machine is shared.

The work left for a worker is measured too, after each round, in this process: the
drain (a batch per transaction) for the deliveries the wake path stored, one
apply_delivery each for the enqueue path's (a Celery worker's own per-task cost comes
on top of that one, so it is understated).

The wake path's publishes depend on how often a drain starts: here the flag is cleared
every --drain-every deliveries, as a drain starting would.

Prints one line per path and a summary line.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import Engine, create_engine, text

from bench.common import BenchStack, callback_body, insert_submitted_jobs, log, main_wrapper, run_dir_for
from falbridge import config
from falbridge.config import normalize_database_url
from falbridge.models.db import transaction
from falbridge.models.inbox import claim_one, record_processed, store_verified

ROUNDS = 4
HEADERS = {"Content-Type": "application/json", "User-Agent": "fal-webhook/bench", "query_job_id": None}


@dataclass
class Path_:
    name: str
    step: Callable[[Engine, str, bytes, int], None]
    pre_ping: bool = True
    receiver_s: float = 0.0
    postgres_s: float = 0.0
    worker_s: float = 0.0
    worker_pg_s: float = 0.0
    deliveries: int = 0
    stored: list[int] = field(default_factory=list)


def _store(engine: Engine, request_id: str, body: bytes) -> int:
    with transaction(engine) as s:
        return store_verified(s, request_id=request_id, body=body, headers=HEADERS).delivery_id


def _store_only(engine: Engine, request_id: str, body: bytes, _n: int) -> None:
    _store(engine, request_id, body)


def _enqueue(engine: Engine, request_id: str, body: bytes, _n: int) -> None:
    from falbridge.worker.celery_app import enqueue
    from falbridge.worker.tasks import process_delivery

    enqueue(process_delivery, _store(engine, request_id, body))


def _wake(drain_every: int) -> Callable[[Engine, str, bytes, int], None]:
    from falbridge.worker import inbox_wakeup
    from falbridge.worker.tasks import wake_drainer

    def step(engine: Engine, request_id: str, body: bytes, n: int) -> None:
        _store(engine, request_id, body)
        wake_drainer()
        if n % drain_every == drain_every - 1:
            inbox_wakeup.release_wake()  # a drain started

    return step


def _apply_inline(engine: Engine, request_id: str, body: bytes, _n: int) -> None:
    from falbridge.worker.apply.delivery import apply_claimed

    with transaction(engine) as s:
        delivery_id = store_verified(s, request_id=request_id, body=body, headers=HEADERS).delivery_id
        claimed = claim_one(s, delivery_id)
        assert claimed is not None
        _, processed = apply_claimed(s, claimed)
        record_processed(s, [processed])


@contextmanager
def _cpu(stack: BenchStack) -> Iterator[list[float]]:
    """[this process's CPU s, PostgreSQL's CPU s] spent inside the block."""
    spent = [time.process_time(), stack.cpu().get("postgres", 0.0)]
    yield spent
    spent[0] = time.process_time() - spent[0]
    spent[1] = stack.cpu().get("postgres", 0.0) - spent[1]


def _worker_side(path: Path_, stack: BenchStack, ids: list[int], engine: Engine) -> None:
    """Apply what the round left in the inbox, as the worker would."""
    from falbridge.worker.apply.delivery import apply_delivery
    from falbridge.worker.apply.drain import drain

    if path.name.startswith("wake"):
        with _cpu(stack) as spent:
            drain(config.current().drain.batch, 10_000)
    elif path.name == "enqueue":
        with _cpu(stack) as spent:
            for delivery_id in ids:
                apply_delivery(delivery_id)
    else:
        # Nothing for a worker: the inline path applied them; store_only's are set aside.
        with engine.begin() as conn:
            conn.execute(
                text("UPDATE webhook_deliveries SET processed_at = now() WHERE processed_at IS NULL")
            )
        return
    path.worker_s += spent[0]
    path.worker_pg_s += spent[1]


def run(deliveries: int, drain_every: int) -> tuple[str, bool]:
    run_dir = run_dir_for("receiver-paths")
    stack = BenchStack(run_dir)
    try:
        stack.start_services(wrk=False)
        for name in ("DATABASE_URL", "REDIS_URL", "FALBRIDGE_SECRET_KEY"):
            os.environ[name] = stack.env[name]
        config.use(None)
        engines = {
            ping: create_engine(normalize_database_url(stack.database_url), pool_pre_ping=ping, pool_size=2)
            for ping in (True, False)
        }
        paths = [
            Path_("enqueue", _enqueue),
            Path_("wake", _wake(drain_every)),
            Path_("wake_no_preping", _wake(drain_every), pre_ping=False),
            Path_("inline", _apply_inline),
            Path_("store_only", _store_only),
            Path_("store_no_preping", _store_only, pre_ping=False),
        ]
        per_round = deliveries // ROUNDS
        jobs = insert_submitted_jobs(stack.database_url, per_round * ROUNDS * len(paths) + 50, "paths")
        warm, jobs = jobs[:50], jobs[50:]
        for n, (_, request_id) in enumerate(warm):  # imports, pools, the first publish
            paths[n % len(paths)].step(engines[True], request_id, callback_body(request_id, n), n)
        from falbridge.worker.apply.drain import drain

        drain(100, 100)
        taken = 0
        for r in range(ROUNDS):
            order = paths if r % 2 == 0 else list(reversed(paths))
            for path in order:
                engine = engines[path.pre_ping]
                batch = jobs[taken : taken + per_round]
                taken += per_round
                with _cpu(stack) as spent:
                    for n, (_, request_id) in enumerate(batch):
                        path.step(engine, request_id, callback_body(request_id, n), n)
                path.receiver_s += spent[0]
                path.postgres_s += spent[1]
                path.deliveries += len(batch)
                _worker_side(path, stack, _unapplied_ids(engine), engine)
            log(f"receiver paths: round {r + 1}/{ROUNDS} done")
        return _report(paths), True
    finally:
        stack.stop()


def _unapplied_ids(engine: Engine) -> list[int]:
    with engine.connect() as conn:
        return [
            row[0]
            for row in conn.execute(
                text("SELECT id FROM webhook_deliveries WHERE processed_at IS NULL ORDER BY id")
            )
        ]


def _report(paths: list[Path_]) -> str:
    base = next(p for p in paths if p.name == "enqueue")

    def ms(seconds: float, path: Path_) -> float:
        return seconds * 1000 / path.deliveries

    lines = []
    for p in paths:
        receiver, pg = ms(p.receiver_s, p), ms(p.postgres_s, p)
        total = receiver + pg + ms(p.worker_s, p) + ms(p.worker_pg_s, p)
        base_total = sum(
            ms(s, base) for s in (base.receiver_s, base.postgres_s, base.worker_s, base.worker_pg_s)
        )
        lines.append(
            f"receiver paths: {p.name:16s} receiver={receiver:.3f}ms postgres={pg:.3f}ms "
            f"worker_apply={ms(p.worker_s, p):.3f}ms worker_postgres={ms(p.worker_pg_s, p):.3f}ms "
            f"receiver_ratio={receiver / ms(base.receiver_s, base):.2f} total_ratio={total / base_total:.2f} "
            f"(n={p.deliveries})"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--deliveries", type=int, default=4000, help="per path, over all rounds")
    parser.add_argument("--drain-every", type=int, default=50)
    args = parser.parse_args(argv)
    return main_wrapper("receiver paths", lambda: run(args.deliveries, args.drain_every))


if __name__ == "__main__":
    sys.exit(main())
