"""Shared plumbing for the speed benchmarks (bench/ingest.py, pipeline.py, history.py,
memory.py): what only a benchmark needs on top of falbridge.devstack (which starts and
reaps PostgreSQL, Redis, the sandbox, the receiver and workers): a durable database,
per-process CPU accounting, the bare-endpoint and no-op baselines, the wrk load
generator, signed callbacks, quiet-machine checks and the profiler.

Every server is a separate OS process in its own session, started the way production
starts it: `falbridge serve` (gunicorn) and `falbridge worker`. The load generator is
wrk, a separate C process that replays pre-built requests from a file
(bench/wrk_replay.lua).

Nothing here is imported by the product.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import text

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from falbridge.cli.serve import serve  # noqa: E402
from falbridge.devstack.processes import ProcessGroup, cpu_seconds  # noqa: E402
from falbridge.devstack.services import find_pg_bin, free_port  # noqa: E402
from falbridge.devstack.stack import SANDBOX_USER_ID, LocalStack, python_module, wait_http, wait_worker  # noqa: E402
from falbridge.models.db import get_engine  # noqa: E402
from falbridge.sandbox.server import SandboxConfig, SandboxServer  # noqa: E402
from falbridge.sandbox.signing import sign  # noqa: E402

BENCH = Path(__file__).resolve().parent
REPLAY_LUA = BENCH / "wrk_replay.lua"
FAKE_FAL_KEY = "bench-key-id:bench-key-secret"
# The jobs API wants `Authorization: Bearer <token>`; the server is given the same token.
API_TOKEN = "bench-" + uuid.uuid4().hex
API_HEADERS = {"Authorization": f"Bearer {API_TOKEN}"}


class Unavailable(RuntimeError):
    """The benchmark cannot run here (no PostgreSQL binaries, no wrk)."""


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def require_tools(wrk: bool = True) -> Path:
    pg_bin = find_pg_bin()
    if pg_bin is None:
        raise Unavailable(
            "PostgreSQL server binaries not found (pg_ctl on PATH or under "
            "/usr/lib/postgresql/*/bin); install postgresql"
        )
    if wrk and subprocess.run(["sh", "-c", "command -v wrk"], capture_output=True).returncode != 0:
        raise Unavailable("wrk not found; install it (apt-get install -y wrk) or run `make bench`")
    return pg_bin


def main_wrapper(name: str, run) -> int:
    """Run a benchmark's `run()` -> (line, ok); SIGTERM unwinds like Ctrl-C so every
    finally block reaps its children. Exit 0 pass, 1 target missed, 2 cannot run."""
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        line, ok = run()
    except Unavailable as exc:
        print(f"{name}: cannot run: {exc}", flush=True)
        return 2
    print(line, flush=True)
    return 0 if ok else 1


# -- is the machine quiet? -------------------------------------------------------


def loadavg() -> float:
    return os.getloadavg()[0]


def cpu_busy(seconds: float = 2.0) -> float:
    """Share of all CPUs busy over the next `seconds` (from /proc/stat): unlike the load
    average, it does not remember the benchmark that ran just before."""

    def sample():
        fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        idle = fields[3] + fields[4]  # idle + iowait
        return sum(fields) - idle, sum(fields)

    busy0, total0 = sample()
    time.sleep(seconds)
    busy1, total1 = sample()
    return (busy1 - busy0) / max(1, total1 - total0)


def _parent_of(pid: int) -> int:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    # The command name (field 2) may hold spaces; the parent's pid follows its closing ")".
    return int(stat.rsplit(")", 1)[1].split()[1])


def _started_by_us(pid: int) -> bool:
    """Whether pid is this process, its parent, or one of its descendants (the pipeline's
    own subscriber is a chaos_subscriber.py process, not another benchmark)."""
    if pid == os.getppid():
        return True
    seen = 0
    while pid > 1 and seen < 64:
        if pid == os.getpid():
            return True
        pid, seen = _parent_of(pid), seen + 1
    return False


def other_benchmarks() -> list[str]:
    """Command lines of benchmark runs that are not ours (chaos runs, other bench scripts)."""
    found = []
    for pid_dir in Path("/proc").iterdir():
        if not pid_dir.name.isdigit() or _started_by_us(int(pid_dir.name)):
            continue
        try:
            cmd = (pid_dir / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "chaos" in cmd and ("python" in cmd or "make" in cmd):
            found.append(f"{pid_dir.name}: {cmd.strip()[:120]}")
    return found


def wait_quiet(max_wait_s: float = 0.0, max_busy: float = 0.25) -> str:
    """Wait (up to max_wait_s) for no chaos run and the CPUs less than `max_busy` busy
    (measured over 2 s, before this benchmark starts anything). Returns a note for the
    report; the caller decides whether to go on."""
    deadline = time.monotonic() + max_wait_s
    while True:
        others, busy = other_benchmarks(), cpu_busy()
        if not others and busy < max_busy:
            return f"quiet (CPUs {busy * 100:.0f}% busy before the run)"
        if time.monotonic() >= deadline:
            what = f"{len(others)} chaos process(es) running; " if others else ""
            note = f"NOT QUIET: {what}CPUs {busy * 100:.0f}% busy before the run"
            log(f"warning: {note}; figures taken now are unreliable")
            return note
        time.sleep(10)


class QuietWatch:
    """Notices another benchmark (a chaos run) starting while ours runs: its figures are
    then flagged as disturbed rather than silently reported."""

    def __init__(self, every_s: float = 3.0):

        self.seen: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(every_s,), daemon=True)
        self._thread.start()

    def _run(self, every_s: float) -> None:
        while not self._stop.wait(every_s):
            others = other_benchmarks()
            if others and not self.seen:
                self.seen = others
                log(f"warning: another benchmark started during this run: {others[0]}")

    def note(self) -> str:
        self._stop.set()
        return f" (DISTURBED: {len(self.seen)} chaos process(es) started during the run)" if self.seen else ""


# -- the stack -----------------------------------------------------------------------


def cpu_delta(before: dict[str, float], after: dict[str, float], per: int) -> dict[str, float]:
    """CPU milliseconds per unit of work, by process."""
    return {name: round((after[name] - before.get(name, 0.0)) * 1000 / per, 2) for name in after}


def serve_defaults() -> dict[str, int]:
    """`falbridge serve`'s own defaults (workers, threads), read from its click options so
    the bare baseline can never drift from the production configuration."""

    return {p.name: p.default for p in serve.params if p.name in ("workers", "threads")}


def set_consuming(app, queue: str, on: bool, who: str = "the worker") -> None:
    """Tell the benchmark's one worker to start (on) or stop consuming `queue`, and wait
    for its answer: limit=1 returns with it instead of after the broadcast's whole timeout."""
    switch = app.control.add_consumer if on else app.control.cancel_consumer
    if not switch(queue, reply=True, timeout=5, limit=1):
        raise RuntimeError(f"{who} did not answer {switch.__name__}")


class BenchStack(LocalStack):
    """A LocalStack on a durable PostgreSQL, plus the baselines and CPU accounting."""

    def __init__(self, run_dir: Path):
        super().__init__(run_dir, cwd=ROOT)  # the baselines import bench.*

    def start_services(self, database: str = "falbridge_bench", *, wrk: bool = True) -> BenchStack:
        require_tools(wrk=wrk)
        self.start_postgres(database, durable=True, max_connections=300)
        self.start_redis()
        self.use_fake_fal(FAKE_FAL_KEY)
        # A deployment's settings: the receiver pins fal's user id (the sandbox's, and
        # JwksHost's) and checks webhook URLs against its secret key (LocalStack's).
        self.set_env({"FALBRIDGE_API_TOKENS": API_TOKEN, "FAL_WEBHOOK_USER_ID": SANDBOX_USER_ID})
        return self

    def start_bare(self, port: int) -> ProcessGroup:
        """The same gunicorn configuration serving bench/bare_app.py (an endpoint that reads
        the body and answers 200)."""
        d = serve_defaults()
        argv = python_module(
            "gunicorn",
            *("--bind", f"127.0.0.1:{port}", "--workers", str(d["workers"]), "--threads", str(d["threads"])),
            *("--worker-class", "gthread", "--graceful-timeout", "10", "--timeout", "30"),
            "bench.bare_app:app",
        )
        proc = self.spawn("bare", argv)
        wait_http(f"http://127.0.0.1:{port}/healthz", proc)
        return proc

    def start_api(self) -> tuple[ProcessGroup, str]:
        """A second `falbridge serve` for the jobs API, as a deployment may run one apart
        from the webhook receiver: the receiver's CPU is then its callbacks' alone."""
        port = free_port()
        api = self.spawn("api", python_module("falbridge", "serve", "--port", str(port)))
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/healthz", api)
        return api, url

    def start_noop_worker(self, concurrency: int, pool: str) -> ProcessGroup:
        """Celery with falbridge's own app plus one task that does nothing
        (bench/noop_task.py): the pipeline's baseline, started the way `falbridge worker` is."""
        argv = python_module(
            *("celery", "-A", "bench.noop_task:celery_app", "worker"),
            *(f"--pool={pool}", f"--concurrency={concurrency}", "--loglevel=INFO"),
        )
        proc = self.spawn("noop-worker", argv)
        wait_worker(proc)
        return proc

    def service_pids(self) -> dict[str, list[int]]:
        """PostgreSQL (postmaster and its backends) and redis-server, for CPU accounting."""
        out = {}
        if self.pg is not None:
            out["postgres"] = self.pg.pids()
        if self.redis is not None:
            out["redis"] = self.redis.pids()
        return out

    def cpu(self) -> dict[str, float]:
        """CPU seconds used so far by each spawned process group and each service."""
        usage = {proc.name: proc.cpu_s() for proc in self.procs if proc.alive()}
        usage.update({name: cpu_seconds(pids) for name, pids in self.service_pids().items()})
        return usage

    def stop(self, *, keep_redis_data: bool = False) -> None:
        super().stop(keep_redis_data=keep_redis_data)  # a replay's queue can be large


def run_dir_for(name: str) -> Path:
    """var/bench/<time>-<name>, or under $BENCH_DIR when set (the tests' temporary dir)."""
    parent = Path(os.environ.get("BENCH_DIR") or ROOT / "var" / "bench")
    path = parent / f"{time.strftime('%Y%m%d-%H%M%S')}-{name}"
    path.mkdir(parents=True, exist_ok=True)
    return path


# -- wrk -----------------------------------------------------------------------


@dataclass
class WrkResult:
    sent: int  # requests of the replayed file that were answered
    non_2xx: int
    seconds: float  # first request written to last answer read
    p50_ms: float
    p90_ms: float
    p99_ms: float
    errors: dict
    generator_cpu_s: float
    complete: bool
    t_first: float = 0.0  # CLOCK_MONOTONIC, the same clock as time.monotonic()
    t_last: float = 0.0

    @property
    def rate(self) -> float:
        return self.sent / self.seconds if self.seconds > 0 else 0.0


def write_requests(path: Path, requests: Iterable[tuple[str, str, dict[str, str], bytes]]) -> int:
    """One request per line: METHOD \\t PATH \\t Name: value\\x1fName: value \\t BODY."""
    count = 0
    with open(path, "wb") as out:
        for method, target, headers, body in requests:
            if b"\t" in body or b"\n" in body:
                raise ValueError("bodies must be single-line JSON without tabs")
            head = "\x1f".join(f"{k}: {v}" for k, v in headers.items())
            out.write(f"{method}\t{target}\t{head}\t".encode() + body + b"\n")
            count += 1
    return count


def run_wrk(
    base_url: str,
    requests_file: Path,
    *,
    connections: int,
    threads: int = 1,
    cap_s: float = 300.0,
    timeout_s: float = 10.0,
) -> WrkResult:
    """Replay every request in `requests_file` exactly once, with `connections` keep-alive
    connections, and return when all are answered.

    wrk runs for a fixed duration, so the Lua script signs off when its last answer is in
    (a marker file per thread) and we end wrk with SIGINT then; its own clock measures
    first request to last answer. Once a thread has no request left it sends GET /healthz
    to keep its connections busy until the last answers arrive; those are not counted.
    """
    marker = Path(tempfile.mkdtemp(prefix="falbridge-wrk-")) / "done"
    argv = [
        "wrk",
        "-t",
        str(threads),
        "-c",
        str(max(connections, threads)),
        "-d",
        f"{int(cap_s)}s",
        "--timeout",
        f"{int(timeout_s)}s",
        "-s",
        str(REPLAY_LUA),
        base_url,
        "--",
        str(requests_file),
        str(marker),
        str(threads),
    ]
    popen = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    deadline = time.monotonic() + cap_s + 15
    cpu = 0.0
    try:
        while popen.poll() is None and time.monotonic() < deadline:
            if all(Path(f"{marker}.{i}").exists() for i in range(1, threads + 1)):
                break
            cpu = cpu_seconds([popen.pid]) or cpu
            time.sleep(0.01)
        cpu = cpu_seconds([popen.pid]) or cpu
        if popen.poll() is None:
            popen.send_signal(signal.SIGINT)
        out, _ = popen.communicate(timeout=30)
    finally:
        if popen.poll() is None:
            os.killpg(popen.pid, signal.SIGKILL)
            popen.wait()
    result_line = next((line for line in out.splitlines() if line.startswith("WRKJSON ")), None)
    if result_line is None:
        raise RuntimeError(f"wrk gave no result:\n{out[-2000:]}")
    doc = json.loads(result_line[len("WRKJSON ") :])
    return WrkResult(
        sent=doc["answered"],
        non_2xx=doc["non_2xx"],
        seconds=doc["seconds"],
        p50_ms=doc["p50_us"] / 1000,
        p90_ms=doc["p90_us"] / 1000,
        p99_ms=doc["p99_us"] / 1000,
        errors=doc["errors"],
        generator_cpu_s=cpu,
        complete=doc["complete"],
        t_first=doc["t_first"],
        t_last=doc["t_last"],
    )


# -- signed callbacks ----------------------------------------------------------


FAL_FILES = "https://v3.fal.media/files/bench"


def callback_body(request_id: str, index: int, file_base: str = FAL_FILES) -> bytes:
    """A realistic fal completion callback for fal-ai/evf-sam: one File object, under
    `file_base` (a local server's URL when the bench stores result files)."""
    return json.dumps(
        {
            "request_id": request_id,
            "gateway_request_id": request_id,
            "status": "OK",
            "payload": {
                "image": {
                    "url": f"{file_base}/{request_id}/mask.png",
                    "content_type": "image/png",
                    "file_name": "mask.png",
                    "file_size": 20_000 + index % 5000,
                    "width": 1024,
                    "height": 768,
                }
            },
        },
        separators=(",", ":"),
    ).encode()


def signed_callbacks(
    key, user_id: str, jobs: list[tuple[str, str]], start_index: int = 0, file_base: str = FAL_FILES
):
    """(method, path, headers, body) for one callback per (job id, request id), signed now."""

    timestamp = str(int(time.time()))
    for offset, (job_id, request_id) in enumerate(jobs):
        body = callback_body(request_id, start_index + offset, file_base)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "fal-webhook/bench",
            "X-Fal-Webhook-Request-Id": request_id,
            "X-Fal-Webhook-User-Id": user_id,
            "X-Fal-Webhook-Timestamp": timestamp,
            "X-Fal-Webhook-Signature": sign(key, request_id, user_id, timestamp, body),
        }
        yield "POST", f"/webhooks/fal?job={job_id}", headers, body


def insert_submitted_jobs(database_url: str, count: int, tag: str) -> list[tuple[str, str]]:
    """`count` jobs as a worker leaves them after fal accepted them (submitted, with a
    request id and fal's URLs), in one INSERT ... SELECT. Returns (job id, request id)."""

    sql = text("""
        INSERT INTO jobs (id, endpoint_id, input, status, request_id, gateway_request_id,
                          status_url, response_url, cancel_url, result_pending, created_at,
                          updated_at, touched_at, submitted_at, submit_attempts, poll_attempts,
                          webhook_count)
        SELECT gen_random_uuid(), 'fal-ai/evf-sam',
               jsonb_build_object('prompt', 'object ' || g, 'image_url', 'https://example.com/cat.png'),
               'submitted', :tag || '-' || g, :tag || '-' || g,
               'https://queue.fal.run/fal-ai/evf-sam/requests/' || :tag || '-' || g || '/status',
               'https://queue.fal.run/fal-ai/evf-sam/requests/' || :tag || '-' || g,
               'https://queue.fal.run/fal-ai/evf-sam/requests/' || :tag || '-' || g || '/cancel',
               false, now(), now(), now(), now(), 1, 0, 0
        FROM generate_series(1, :n) AS g
        RETURNING id, request_id""")
    with get_engine(database_url).begin() as conn:
        rows = conn.execute(sql, {"tag": tag, "n": count}).all()
    order = {f"{tag}-{i}": i for i in range(1, count + 1)}
    return sorted(((str(r.id), r.request_id) for r in rows), key=lambda r: order[r[1]])


class JwksHost:
    """A sandbox in this (the driver's) process, only to publish its JWKS to the receiver;
    its signing key signs the pre-built callbacks, exactly as the sandbox would."""

    def __init__(self):

        self.server = SandboxServer(SandboxConfig(host="127.0.0.1", port=0)).start()
        self.key = self.server.core.keys.signing_key
        self.user_id = self.server.core.config.user_id
        self.jwks_url = self.server.jwks_url

    def stop(self) -> None:
        self.server.stop()


def finish_line(line: str, quiet: str, watch: QuietWatch | None = None) -> str:
    """A benchmark's summary line, saying if the machine was busy when it started, and
    (`watch`) whether a chaos run started meanwhile."""
    if "NOT QUIET" in quiet:
        line += f" ({quiet})"
    return line + (watch.note() if watch else "")


def fmt_ms(value: float) -> str:
    return f"{value:.1f}ms" if value < 100 else f"{value:.0f}ms"


# -- profiling (BENCH_PROFILE=1) ----------------------------------------------------


class Profiler:
    """py-spy (sampling, from outside the process) on each process group's leader and its
    subprocesses while a measured phase runs, when BENCH_PROFILE=1. Collapsed stacks go to
    <run_dir>/profile-<name>.txt; bench/profile_report.py summarises them. `--gil`: only
    samples of a thread holding the GIL count, so waiting on a socket is not mistaken for work."""

    def __init__(self, run_dir: Path, procs: list[ProcessGroup], rate: int = 250):
        self.popens: list[subprocess.Popen] = []
        if os.environ.get("BENCH_PROFILE") != "1":
            return
        spy = Path(sys.executable).parent / "py-spy"
        if not spy.exists():
            raise Unavailable("BENCH_PROFILE=1 needs py-spy in the venv (pip install py-spy)")
        for proc in procs:
            out = run_dir / f"profile-{proc.name}.txt"
            self.popens.append(
                subprocess.Popen(
                    [
                        str(spy),
                        "record",
                        "--pid",
                        str(proc.popen.pid),
                        "--subprocesses",
                        "--nonblocking",
                        "--rate",
                        str(rate),
                        "--gil",
                        "--format",
                        "raw",
                        "--output",
                        str(out),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    start_new_session=True,
                )
            )
        time.sleep(1.0)  # py-spy attaches

    def stop(self) -> None:
        for popen in self.popens:
            if popen.poll() is None:
                popen.send_signal(signal.SIGINT)
        for popen in self.popens:
            try:
                popen.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(popen.pid, signal.SIGKILL)
                popen.wait()
