"""What a chaos run does to the stack: submit jobs over HTTP, and break things meanwhile.

The submitter posts through the public API with an external_id per job, so a POST that
died with the receiver can simply be sent again: the API returns the same job (200)
instead of creating a second one. It is paced (a rate and a cap on unfinished jobs), so
the run measures the pipeline under faults rather than an ever-growing Redis backlog.
"""

from __future__ import annotations

import base64
import contextlib
import struct
import threading
import time
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import httpx
from sqlalchemy import func, select

from falbridge.models.db import transaction
from falbridge.models.states import TERMINAL
from falbridge.models.tables import Job

EVF_SAM = "fal-ai/evf-sam"
REGION_PROPOSAL = "fal-ai/florence-2-large/region-proposal"
PASS_THROUGH = "fal-ai/chaos-echo"  # any other id goes to fal as-is; the sandbox echoes it


def tiny_png(width: int = 8, height: int = 6) -> bytes:
    """A valid RGB PNG from the stdlib: the sandbox models read its size from IHDR."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    # Each row: filter byte 0, then RGB pixels.
    raw = b"".join(
        b"\x00" + b"".join(bytes((x * 30 % 256, y * 40 % 256, 128)) for x in range(width))
        for y in range(height)
    )
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    )


PNG_URI = "data:image/png;base64," + base64.b64encode(tiny_png()).decode()


def job_request(run_tag: str, index: int) -> dict:
    """The i-th job: the two first-class endpoints and a pass-through, in turn."""
    external_id = f"chaos-{run_tag}-{index}"
    kind = index % 3
    if kind == 0:
        body = {"endpoint_id": EVF_SAM, "input": {"prompt": f"object {index}", "image_url": PNG_URI}}
    elif kind == 1:
        body = {"endpoint_id": REGION_PROPOSAL, "input": {"image_url": PNG_URI}}
    else:
        body = {"endpoint_id": PASS_THROUGH, "input": {"prompt": f"echo {index}", "n": index}}
    return {**body, "external_id": external_id, "metadata": {"chaos": run_tag, "index": index}}


class Progress:
    """Counts from the database, refreshed by one thread; everyone else reads them."""

    def __init__(self, engine, interval_s: float = 0.5):
        self.engine, self.interval_s = engine, interval_s
        self.total = 0
        self.terminal = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="chaos-progress", daemon=True)

    def start(self) -> Progress:
        self.refresh()
        self._thread.start()
        return self

    def refresh(self) -> None:
        with transaction(self.engine) as s:
            rows = s.execute(select(Job.status, func.count()).group_by(Job.status)).all()
        self.total = sum(n for _, n in rows)
        self.terminal = sum(n for status, n in rows if status in {t.value for t in TERMINAL})

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            with contextlib.suppress(Exception):  # a busy database must not kill the monitor
                self.refresh()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


@dataclass
class SubmitStats:
    created: int = 0
    replayed: int = 0  # 200: the external_id was already stored (a retried POST)
    retries: int = 0
    job_ids: dict[int, str] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def done(self) -> int:
        return len(self.job_ids)


class Submitter:
    def __init__(
        self,
        api_url: str,
        api_token: str,
        run_tag: str,
        jobs: int,
        *,
        rate: float,
        max_in_flight: int,
        progress: Progress,
        threads: int = 8,
        post_deadline_s: float = 120.0,
    ):
        self.api_url, self.run_tag, self.jobs = api_url, run_tag, jobs
        self.headers = {"Authorization": f"Bearer {api_token}"}
        self.rate, self.max_in_flight, self.progress = rate, max_in_flight, progress
        self.threads, self.post_deadline_s = threads, post_deadline_s
        self.stats = SubmitStats()
        self._slot_lock = threading.Lock()
        self._next_slot = 0.0

    def run(self) -> SubmitStats:
        self._next_slot = time.monotonic()
        with (
            httpx.Client(timeout=httpx.Timeout(10.0, connect=2.0), headers=self.headers) as client,
            ThreadPoolExecutor(self.threads, thread_name_prefix="chaos-submit") as pool,
        ):
            list(pool.map(lambda i: self._one(client, i), range(self.jobs)))
        return self.stats

    def _pace(self) -> None:
        with self._slot_lock:  # one slot per 1/rate seconds, handed out in order
            slot = self._next_slot = max(self._next_slot + 1.0 / self.rate, time.monotonic() - 1.0)
        while True:
            wait = slot - time.monotonic()
            in_flight = self.stats.done - self.progress.terminal
            if wait <= 0 and in_flight < self.max_in_flight:
                return
            time.sleep(max(0.01, min(wait, 0.1)))

    def _one(self, client: httpx.Client, index: int) -> None:
        if len(self.stats.failures) >= 10:  # the harness is broken, not the pipeline: stop
            self._fail(index, "not sent: submissions aborted after 10 failures")
            return
        self._pace()
        body = job_request(self.run_tag, index)
        deadline = time.monotonic() + self.post_deadline_s
        attempt = 0
        while True:
            attempt += 1
            try:
                response = client.post(f"{self.api_url}/api/jobs", json=body)
                if response.status_code in (200, 202):
                    self._record(
                        index, response.json()["id"], replay=response.status_code == 200 or attempt > 1
                    )
                    return
                problem = f"HTTP {response.status_code}: {response.text[:200]}"
                if response.status_code < 500 and response.status_code != 429:  # our request is wrong
                    self._fail(index, problem)
                    return
            except httpx.HTTPError as exc:  # receiver down (its restart) or overloaded
                problem = f"{type(exc).__name__}: {exc}"
            if time.monotonic() > deadline:
                self._fail(index, f"gave up after {attempt} attempts: {problem}")
                return
            with self.stats.lock:
                self.stats.retries += 1
            time.sleep(min(2.0, 0.1 * 2 ** min(attempt, 5)))

    def _record(self, index: int, job_id: str, replay: bool) -> None:
        with self.stats.lock:
            self.stats.job_ids[index] = job_id
            if replay:
                self.stats.replayed += 1
            else:
                self.stats.created += 1

    def _fail(self, index: int, problem: str) -> None:
        with self.stats.lock:
            self.stats.failures.append(f"job {index}: {problem}")


@dataclass
class ChaosEvent:
    at_s: float
    kind: str
    detail: str


class ChaosMonkey:
    """Every `kill_every_s`: SIGKILL a worker; at 1/3 of submissions Redis, at 2/3 the
    receiver (each SIGKILLed and restarted on the same port, once); at 1/2 the webhook
    subscriber goes away for `away_s` (its port closed, then open again), once."""

    def __init__(
        self,
        stack,
        submitted: Callable[[], int],
        jobs: int,
        *,
        kill_every_s: float,
        max_kills: int | None,
        log: Callable[[str], None],
        t0: float,
        subscriber=None,
        away_s: float = 0.0,
    ):
        self.stack, self.submitted, self.jobs = stack, submitted, jobs
        self.subscriber, self.away_s = subscriber, away_s
        self.subscriber_outages = 0
        self.kill_every_s, self.max_kills = kill_every_s, max_kills
        self.log, self.t0 = log, t0
        self.events: list[ChaosEvent] = []
        self.kills = self.redis_restarts = self.receiver_restarts = 0
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="chaos-monkey", daemon=True)

    def start(self) -> ChaosMonkey:
        self._thread.start()
        return self

    def stop(self, min_kills: int = 0, wait_s: float = 60.0) -> None:
        """Stop breaking things, once at least `min_kills` workers were killed (or after
        `wait_s`): a short run may finish submitting before its kills are done."""
        deadline = time.monotonic() + wait_s
        while self.kills < min_kills and time.monotonic() < deadline and self._thread.is_alive():
            time.sleep(0.1)
        self._stop.set()
        self._thread.join(120)

    def _event(self, kind: str, detail: str) -> None:
        at = time.monotonic() - self.t0
        self.events.append(ChaosEvent(round(at, 2), kind, detail))
        self.log(f"[{at:7.1f}s] {kind}: {detail}")

    def _run(self) -> None:
        next_kill = time.monotonic() + self.kill_every_s
        while not self._stop.wait(0.05):
            try:
                if not self.redis_restarts and self.submitted() >= self.jobs / 3:
                    started = time.monotonic()
                    self.stack.restart_redis()
                    self.redis_restarts += 1
                    self._event(
                        "redis_restart",
                        f"SIGKILL + restart on the same port in {time.monotonic() - started:.2f}s",
                    )
                elif not self.receiver_restarts and self.submitted() >= 2 * self.jobs / 3:
                    started = time.monotonic()
                    self.stack.restart_receiver()
                    self.receiver_restarts += 1
                    self._event(
                        "receiver_restart",
                        f"SIGKILL gunicorn group + restart in {time.monotonic() - started:.2f}s",
                    )
                elif (
                    self.subscriber is not None
                    and not self.subscriber_outages
                    and self.away_s > 0
                    and self.submitted() >= self.jobs / 2
                ):
                    self.subscriber_outages += 1
                    self._event("subscriber_away", f"port {self.subscriber.port} closed for {self.away_s:g}s")
                    self.subscriber.away(self.away_s)
                    self._event("subscriber_back", f"port {self.subscriber.port} open again")
                elif time.monotonic() >= next_kill and (
                    self.max_kills is None or self.kills < self.max_kills
                ):
                    killed = self.stack.kill_oldest_worker()
                    if killed is None:  # a replacement is still booting: kill once it works
                        continue
                    self.kills += 1
                    self._event("worker_kill", f"SIGKILL {killed[0]} (process group); started {killed[1]}")
                    next_kill = time.monotonic() + self.kill_every_s
            except Exception as exc:  # keep breaking things; report at the end
                self.errors.append(f"{type(exc).__name__}: {exc}")
                self._event("chaos_error", f"{type(exc).__name__}: {exc}")
                time.sleep(1)
