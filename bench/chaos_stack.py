"""The processes of a chaos run: a falbridge.devstack LocalStack with the chaos run's
choices (PostgreSQL or SQLite, the sandbox's faults, N workers and beat) and its breaking
of them (a worker's whole group SIGKILLed and replaced).

Every child starts in its own session, so one `killpg` takes down a worker with its
prefork children, or gunicorn with its workers, the way an orchestrator's SIGKILL would;
`stop()` always reaps all of them, even through a second Ctrl-C.
"""

from __future__ import annotations

import secrets
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.chaos_config import (
    FAKE_FAL_KEY,
    FAULTS,
    NOTIFY_SCHEDULE_SCALE,
    SANDBOX_RUNTIME,
    Timings,
    notify_env,
)
from bench.chaos_subscriber import subscribe
from falbridge.devstack.processes import ProcessGroup
from falbridge.devstack.stack import WORKER_READY, LocalStack, wait_worker

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class StackConfig:
    run_dir: Path
    database: str = "postgresql"
    seed: int = 1
    workers: int = 2
    worker_concurrency: int = 2
    sandbox_latency_s: float = 0.2
    sandbox_concurrency: int = 64
    timings: Timings = field(default_factory=Timings)
    faults: dict[str, Any] = field(default_factory=lambda: dict(FAULTS))
    notify_schedule_scale: float = NOTIFY_SCHEDULE_SCALE
    flow_cap: int = 0  # FALBRIDGE_MAX_IN_FLIGHT for the workers; 0: flow control off


class ChaosStack(LocalStack):
    def __init__(self, config: StackConfig):
        super().__init__(config.run_dir, cwd=ROOT)
        self.config = config
        self.workers: list[ProcessGroup] = []
        self._ready: set[int] = set()  # workers (by pid) seen consuming
        self._worker_serial = 0
        # The jobs API wants a bearer token (webhooks/auth.py); a fresh one per run.
        self.api_token = secrets.token_urlsafe(32)

    def start(self) -> ChaosStack:
        if self.config.database == "postgresql":
            self.start_postgres("falbridge_chaos", max_connections=400)
        else:
            self.use_database()  # SQLite in the run directory
        self.start_redis()
        self.set_env(
            {
                **self.config.timings.env(),
                "FALBRIDGE_API_TOKENS": self.api_token,
                "FALBRIDGE_API_AUTH": None,  # never a shell's "off"
                "FALBRIDGE_SUBMIT_MAX_RETRIES": "8",  # production's, whatever this shell has
                **notify_env(self.config.notify_schedule_scale),
                "FALBRIDGE_MAX_IN_FLIGHT": str(self.config.flow_cap) if self.config.flow_cap else None,
            }
        )
        self.start_sandbox(
            seed=self.config.seed,
            latency_s=self.config.sandbox_latency_s,
            concurrency=self.config.sandbox_concurrency,
            retention_s=86400,
            faults=self.config.faults,
            fal_key=FAKE_FAL_KEY,
        )
        httpx.put(
            f"{self.sandbox_url}/_sandbox/config", json=self.sandbox_runtime(), timeout=10
        ).raise_for_status()
        self.start_receiver(workers=2)
        for _ in range(self.config.workers):  # booting side by side
            self.start_chaos_worker()
        self.start_beat()
        for worker in self.workers:  # submit only once the pipeline can move
            wait_worker(worker)
        return self

    def sandbox_runtime(self) -> dict[str, Any]:
        return {**SANDBOX_RUNTIME, "retention_scale": self.config.timings.retention_scale}

    def start_chaos_worker(self) -> ProcessGroup:
        """A worker named worker#<n>; the n-th replacement logs to the slot it took over."""
        self._worker_serial += 1
        slot = (self._worker_serial - 1) % max(1, self.config.workers)
        worker = self.start_worker(
            concurrency=self.config.worker_concurrency,
            name=f"worker#{self._worker_serial}",
            log=f"worker-{slot + 1}",
            wait=False,
        )
        self.workers.append(worker)
        return worker

    def worker_ready(self, worker: ProcessGroup) -> bool:
        # The log is the only signal that needs no broker connection of our own; once
        # seen, it is remembered rather than read again.
        if worker.popen.pid in self._ready:
            return True
        if not worker.alive():
            raise RuntimeError(f"{worker.name} exited with {worker.popen.returncode}; see {worker.log_path}")
        if worker.logged(WORKER_READY):
            self._ready.add(worker.popen.pid)
            return True
        return False

    def kill_oldest_worker(self) -> tuple[str, str] | None:
        """SIGKILL the longest-lived worker's whole group and start a replacement.

        Only once every live worker is consuming (None until then): a worker takes a few
        seconds to boot here, and killing one that never took a task tests nothing.
        """
        live = [w for w in self.workers if w.alive()]
        if not live or not all(self.worker_ready(w) for w in live):
            return None
        victim = min(live, key=lambda w: w.started)
        self.kill(victim)
        self.workers.remove(victim)
        self._ready.discard(victim.popen.pid)
        return victim.name, self.start_chaos_worker().name

    def subscribe(self, url: str, events: list[str]) -> dict[str, Any]:
        """A subscription made through the receiver's API when it has one, else through
        worker.notify.manage with this stack's environment (bench/chaos_subscriber.py)."""
        return subscribe(
            self.env,
            url,
            events,
            description="chaos run subscriber",
            api_url=self.receiver_url,
            api_token=self.api_token,
        )

    def describe(self) -> dict[str, Any]:
        return {
            "database": self.config.database,
            "sandbox": self.sandbox_url,
            "receiver": self.receiver_url,
            "redis": self.redis_url or None,
            "faults": self.config.faults,
            "sandbox_runtime": self.sandbox_runtime(),
            "timings": asdict(self.config.timings),
            "notify": notify_env(self.config.notify_schedule_scale),
        }
