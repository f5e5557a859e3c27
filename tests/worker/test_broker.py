"""The embedded default's Redis: one per var dir, shared, and healed by whoever finds it gone."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import pytest

from falbridge import config, local
from falbridge.config import Config
from falbridge.devstack.stack import LocalStack
from falbridge.worker import broker, celery_app
from tests.plugins.waiting import poll_until


def _pid(var_dir: Path) -> int:
    return int((var_dir / "redis" / "redis.pid").read_text().strip())


def test_one_server_per_var_dir_whoever_asks_first(tmp_path):
    urls: list[str] = []
    threads = [threading.Thread(target=lambda: urls.append(broker.embedded_url(tmp_path))) for _ in range(6)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(set(urls)) == 1 and urls[0].startswith("redis://127.0.0.1:")
        first = _pid(tmp_path)
        os.kill(first, signal.SIGKILL)
        poll_until(lambda: broker.ping(int(urls[0].rsplit(":", 1)[1].split("/")[0])), lambda up: not up)
        assert broker.embedded_url(tmp_path) == urls[0] and _pid(tmp_path) != first  # same address
    finally:
        broker.stop(tmp_path)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_jobs_finish_through_a_killed_embedded_redis(tmp_path):
    """serve and a worker on the embedded default; Redis killed mid-run and left alone:
    they start it again, reconnect, and the sweeper re-drives what the outage dropped."""
    stack = LocalStack(tmp_path)
    var_dir = Path(stack.env["FALBRIDGE_VAR_DIR"])
    try:
        stack.use_database()
        stack.set_env(
            {"REDIS_URL": None, "FALBRIDGE_PENDING_GRACE_S": "3", "FALBRIDGE_DELIVERY_GRACE_S": "3"}
        )
        stack.set_env({"FALBRIDGE_SILENT_AFTER_S": "10", "FALBRIDGE_RECONCILE_INTERVAL_S": "1"})
        stack.start_sandbox(latency_s=0.2)
        stack.start_receiver(workers=1)
        stack.start_worker(concurrency=2, pool="threads")
        config.use(Config.from_environ(stack.env))
        celery_app._configured = False  # this process joins the var dir's Redis, as a new one would
        first = [local.submit("fal-ai/some/model", {"n": n}).id for n in range(10)]
        os.kill(_pid(var_dir), signal.SIGKILL)
        during = [local.submit("fal-ai/some/model", {"n": n}).id for n in range(10, 20)]
        jobs = poll_until(
            lambda: [local.get(job_id) for job_id in first + during],
            lambda found: all(job.is_terminal for job in found),
            timeout=120,
            describe=lambda found: str({j.id[:8]: j.status for j in found if not j.is_terminal}),
        )
        assert {job.status for job in jobs} == {"completed"}
        assert broker.ping(int((var_dir / "redis" / "port").read_text()))  # healed, same port
    finally:
        stack.stop()
        broker.stop(var_dir)
        config.use(None)
        celery_app._configured = False
