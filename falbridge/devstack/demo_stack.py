"""What `falbridge demo` runs: the sandbox as fal (unless a real fal is configured), the
receiver, a Celery worker and the sweeper, each a real child process talking over HTTP and
Redis as in production (falbridge.devstack.stack does the starting and the reaping; this
module holds the demo's choices). On the embedded default the worker is the sweeper (it
runs it itself) and every process shares the embedded Redis of the demo's var dir; with
REDIS_URL set, `falbridge beat` sweeps, as in production.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from falbridge import config
from falbridge.devstack.stack import LocalStack, wait_worker
from falbridge.worker import broker

DEMO_FAL_KEY = "demo-key:demo-secret"
# Production sweeps every 30 s, longer than the whole demo; every 2 s, the demo's sweeper
# runs while jobs are in flight, as production's does (its thresholds stay production's,
# so it re-drives nothing a healthy run needs). A FALBRIDGE_RECONCILE_INTERVAL_S set wins.
SWEEP_EVERY_S = "2"


def var_dir(stack: LocalStack) -> Path:
    """The var dir the demo's processes share (its SQLite file, its embedded Redis)."""
    return Path(stack.env["FALBRIDGE_VAR_DIR"])


def real_fal_configured() -> bool:
    fal = config.current().fal
    return fal.api_key() is not None and fal.public_base_url is not None


@contextmanager
def demo_stack(run_dir: Path, *, real_fal: bool) -> Iterator[LocalStack]:
    """Start the children in a fresh `run_dir` and make this process's configuration
    theirs (it submits the jobs and reads the history); stop them all afterwards."""
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    own = config.current()
    stack = LocalStack(run_dir)
    try:
        stack.use_database(own.database.url or None)  # None: SQLite in run_dir
        if own.broker.redis_url:
            stack.use_redis(own.broker.redis_url)
        # else each child finds (or starts) the embedded Redis of the var dir they share
        stack.env.setdefault("FALBRIDGE_RECONCILE_INTERVAL_S", SWEEP_EVERY_S)
        stack.env.setdefault("FALBRIDGE_LOG_FORMAT", "text")  # for people watching the demo
        # With real fal, PUBLIC_BASE_URL (a tunnel) must forward to a known local port.
        receiver_port = own.demo.receiver_port if real_fal else None
        if not real_fal:
            stack.start_sandbox(latency_s=0.3, concurrency=16, fal_key=DEMO_FAL_KEY)
            # Loopback only, so the API can be tried with curl. Never with real fal: there a
            # tunnel makes the receiver's port public, and the API keeps its tokens.
            stack.set_env({"FALBRIDGE_API_AUTH": "off"})
            print("API authentication is OFF (embedded demo only)", flush=True)
        stack.start_receiver(receiver_port, workers=2)
        config.use(config.Config.from_environ(stack.env))
        worker = stack.start_worker(concurrency=8, pool="threads", wait=False)
        if own.broker.redis_url:
            stack.start_beat()  # while the worker boots
        wait_worker(worker)  # submit only once it consumes: the figures are the pipeline's
        yield stack
    finally:
        stack.stop()
        if not own.broker.redis_url:
            broker.stop(var_dir(stack))  # the embedded Redis the children shared
