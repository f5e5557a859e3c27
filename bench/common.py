"""Shared plumbing for the speed benchmarks (bench/ingest.py, pipeline.py, history.py,
memory.py): real services, process groups, the wrk load generator, signed callbacks.

Every server is a separate OS process in its own session (so one killpg reaps a gunicorn
master with its workers, or a Celery worker with its pool), started the way production
starts it: `falbridge serve` (gunicorn) and `falbridge worker`. PostgreSQL and Redis are
the real servers from falbridge/localservices.py. The load generator is wrk, a separate
C process that replays pre-built requests from a file (bench/wrk_replay.lua).

Nothing here is imported by the product.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from falbridge.devstack.services import PostgresCluster, RedisServer, find_pg_bin, free_port  # noqa: E402, F401

BENCH = Path(__file__).resolve().parent
REPLAY_LUA = BENCH / "wrk_replay.lua"
FAKE_FAL_KEY = "bench-key-id:bench-key-secret"
# The jobs API wants `Authorization: Bearer <token>`; the server is given the same token.
API_TOKEN = "bench-" + uuid.uuid4().hex
API_HEADERS = {"Authorization": f"Bearer {API_TOKEN}"}
CLK_TCK = os.sysconf("SC_CLK_TCK")


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


def other_benchmarks() -> list[str]:
    """Command lines of benchmark runs that are not ours (chaos runs, other bench scripts)."""
    mine = {os.getpid(), os.getppid()}
    found = []
    for pid_dir in Path("/proc").iterdir():
        if not pid_dir.name.isdigit() or int(pid_dir.name) in mine:
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
        import threading

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


# -- processes --------------------------------------------------------------------


def _proc_stats() -> Iterable[tuple[int, list[str]]]:
    """(pid, the /proc/<pid>/stat fields after the command name) for every live process."""
    for pid_dir in Path("/proc").iterdir():
        if not pid_dir.name.isdigit():
            continue
        try:
            stat = (pid_dir / "stat").read_text()
        except OSError:
            continue
        yield int(pid_dir.name), stat[stat.rindex(")") + 2 :].split()


def group_pids(pgid: int) -> list[int]:
    """Every live process whose process group is `pgid` (a child started in its own session)."""
    return [pid for pid, fields in _proc_stats() if int(fields[2]) == pgid and fields[0] != "Z"]


def children_of(parent: int) -> list[int]:
    return [pid for pid, fields in _proc_stats() if int(fields[1]) == parent]


def cpu_delta(before: dict[str, float], after: dict[str, float], per: int) -> dict[str, float]:
    """CPU milliseconds per unit of work, by process."""
    return {name: round((after[name] - before.get(name, 0.0)) * 1000 / per, 2) for name in after}


def rss_kib(pids: Iterable[int]) -> int:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def cpu_seconds(pids: Iterable[int]) -> float:
    """User + system CPU of these processes (their reaped children included)."""
    ticks = 0
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        ticks += sum(int(v) for v in fields[11:15])  # utime stime cutime cstime
    return ticks / CLK_TCK


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen
    log_path: Path

    def alive(self) -> bool:
        return self.popen.poll() is None

    def pids(self) -> list[int]:
        return group_pids(self.popen.pid)

    def rss_kib(self) -> int:
        return rss_kib(self.pids())

    def cpu_s(self) -> float:
        return cpu_seconds(self.pids())

    def signal(self, sig: int) -> None:
        try:
            os.killpg(self.popen.pid, sig)
        except ProcessLookupError:
            pass

    def stop(self, grace_s: float = 10.0) -> None:
        if self.alive():
            self.signal(signal.SIGTERM)
            try:
                self.popen.wait(grace_s)
            except subprocess.TimeoutExpired:
                pass
        self.signal(signal.SIGKILL)  # the group: orphaned pool children included
        try:
            self.popen.wait(10)
        except subprocess.TimeoutExpired:
            pass

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def serve_defaults() -> dict[str, int]:
    """`falbridge serve`'s own defaults (workers, threads), read from its click options so
    the bare baseline can never drift from the production configuration."""
    from falbridge.cli.serve import serve

    return {p.name: p.default for p in serve.params if p.name in ("workers", "threads")}


@dataclass
class Stack:
    """PostgreSQL + Redis + whatever processes a benchmark spawns; `stop()` reaps all."""

    run_dir: Path
    pg: PostgresCluster | None = None
    redis: RedisServer | None = None
    database_url: str = ""
    procs: list[Proc] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)

    def start_services(self, database: str = "falbridge_bench", *, wrk: bool = True) -> Stack:
        from falbridge.models.migrate import upgrade

        pg_bin = require_tools(wrk=wrk)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.pg = PostgresCluster(pg_bin, max_connections=300, durable=True).start()
        self.database_url = self.pg.create_database(database)
        upgrade(self.database_url)
        self.redis = RedisServer(self.run_dir / "redis").start()
        self.env = self._base_env()
        return self

    def _base_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "DATABASE_URL": self.database_url,
                "REDIS_URL": self.redis.url,
                "FAL_KEY": FAKE_FAL_KEY,
                "FALBRIDGE_API_TOKENS": API_TOKEN,
                "FALBRIDGE_VAR_DIR": str(self.run_dir / "var"),
                "PYTHONUNBUFFERED": "1",
                # The sandbox serves its files on loopback.
                "FALBRIDGE_FETCH_ALLOW_PRIVATE": "1",
            }
        )
        for name in ("FAL_KEY_ID", "FAL_KEY_SECRET", "FAL_WEBHOOK_USER_ID"):
            env.pop(name, None)
        return env

    def spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> Proc:
        path = self.run_dir / f"{name}.log"
        with open(path, "ab") as out:
            popen = subprocess.Popen(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env or self.env,
                cwd=ROOT,
                start_new_session=True,
            )
        proc = Proc(name, popen, path)
        self.procs.append(proc)
        return proc

    def start_receiver(self, port: int, name: str = "receiver", **extra_env: str) -> Proc:
        """The production receiver + jobs API: `falbridge serve` (gunicorn, its defaults)."""
        env = {**self.env, **extra_env}
        proc = self.spawn(name, [sys.executable, "-m", "falbridge", "serve", "--port", str(port)], env)
        wait_http(f"http://127.0.0.1:{port}/healthz", proc)
        return proc

    def start_bare(self, port: int) -> Proc:
        """The same gunicorn configuration serving bench/bare_app.py (an endpoint that reads
        the body and answers 200)."""
        d = serve_defaults()
        argv = [
            sys.executable,
            "-m",
            "gunicorn",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(d["workers"]),
            "--threads",
            str(d["threads"]),
            "--worker-class",
            "gthread",
            "--graceful-timeout",
            "10",
            "--timeout",
            "30",
            "bench.bare_app:app",
        ]
        proc = self.spawn("bare", argv)
        wait_http(f"http://127.0.0.1:{port}/healthz", proc)
        return proc

    def start_worker(
        self,
        concurrency: int,
        name: str = "worker",
        app: str | None = None,
        pool: str = "prefork",
        **extra_env: str,
    ) -> Proc:
        """`falbridge worker` (or, for the no-op baseline, celery with `app`, which is the
        same Celery app object plus one task)."""
        env = {**self.env, **extra_env}
        if app is None:
            argv = [
                sys.executable,
                "-m",
                "falbridge",
                "worker",
                "--pool",
                pool,
                "--concurrency",
                str(concurrency),
            ]  # its default log level, INFO
        else:
            argv = [
                sys.executable,
                "-m",
                "celery",
                "-A",
                app,
                "worker",
                f"--pool={pool}",
                f"--concurrency={concurrency}",
                "--loglevel=INFO",
            ]
        proc = self.spawn(name, argv, env)
        wait_worker_ready(proc)
        return proc

    def start_sandbox(self, port: int, latency_s: float = 0.0, concurrency: int = 64) -> Proc:
        proc = self.spawn(
            "sandbox",
            [
                sys.executable,
                "-m",
                "falbridge.sandbox",
                "--port",
                str(port),
                "--latency",
                str(latency_s),
                "--concurrency",
                str(concurrency),
                "--retention",
                "3600",
                "--seed",
                "1",
            ],
        )
        wait_http(f"http://127.0.0.1:{port}/.well-known/jwks.json", proc)
        return proc

    def service_pids(self) -> dict[str, list[int]]:
        """PostgreSQL (postmaster and its backends) and redis-server, for CPU accounting."""
        out: dict[str, list[int]] = {}
        if self.pg is not None:
            try:
                postmaster = int((self.pg.data / "postmaster.pid").read_text().split()[0])
                out["postgres"] = [postmaster, *children_of(postmaster)]
            except (OSError, ValueError, IndexError):
                pass
        if self.redis is not None and self.redis.proc is not None:
            out["redis"] = [self.redis.proc.pid]
        return out

    def cpu(self) -> dict[str, float]:
        """CPU seconds used so far by each spawned process group and each service."""
        usage = {proc.name: proc.cpu_s() for proc in self.procs if proc.alive()}
        usage.update({name: cpu_seconds(pids) for name, pids in self.service_pids().items()})
        return usage

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()
        if self.redis is not None:
            self.redis.kill()
            self.redis.stop(remove=True)
        if self.pg is not None:
            from falbridge.models.db import dispose_all

            dispose_all()
            self.pg.stop(keep_log=self.run_dir / "postgresql.log")


def run_dir_for(name: str) -> Path:
    """var/bench/<time>-<name>, or under $BENCH_DIR when set (the tests' temporary dir)."""
    parent = Path(os.environ.get("BENCH_DIR") or ROOT / "var" / "bench")
    path = parent / f"{time.strftime('%Y%m%d-%H%M%S')}-{name}"
    path.mkdir(parents=True, exist_ok=True)
    return path


def wait_http(url: str, proc: Proc, timeout: float = 60.0) -> None:
    wait_answering(
        url,
        proc.popen,
        proc.name,
        timeout=timeout,
        exit_detail=lambda: f":\n{proc.log_tail()}",
        see=str(proc.log_path),
    )


def wait_answering(
    url: str,
    popen: subprocess.Popen,
    name: str,
    *,
    see: str,
    timeout: float = 60.0,
    exit_detail: Callable[[], str] | None = None,
) -> None:
    """Return once `url` answers below 500; raise (saying where to look) if the server
    process exits first or `timeout` passes."""
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if popen.poll() is not None:
            detail = exit_detail() if exit_detail else f"; see {see}"
            raise RuntimeError(f"{name} exited with {popen.returncode}{detail}")
        try:
            if httpx.get(url, timeout=1.0).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s; see {see}")


def wait_worker_ready(proc: Proc, offset: int = 0, timeout: float = 60.0) -> None:
    """Celery logs "<node> ready." once it consumes (at the production log level, INFO)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited with {proc.popen.returncode}:\n{proc.log_tail()}")
        with open(proc.log_path, "rb") as f:
            f.seek(offset)
            if b" ready." in f.read():
                return
        time.sleep(0.1)
    raise RuntimeError(f"{proc.name} not consuming within {timeout:.0f} s; see {proc.log_path}")


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


def callback_body(request_id: str, index: int) -> bytes:
    """A realistic fal completion callback for fal-ai/evf-sam: one File object."""
    return json.dumps(
        {
            "request_id": request_id,
            "gateway_request_id": request_id,
            "status": "OK",
            "payload": {
                "image": {
                    "url": f"https://v3.fal.media/files/bench/{request_id}/mask.png",
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


def signed_callbacks(key, user_id: str, jobs: list[tuple[str, str]], start_index: int = 0):
    """(method, path, headers, body) for one callback per (job id, request id), signed now."""
    from falbridge.sandbox.signing import sign

    timestamp = str(int(time.time()))
    for offset, (job_id, request_id) in enumerate(jobs):
        body = callback_body(request_id, start_index + offset)
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
    from sqlalchemy import text

    from falbridge.models.db import get_engine

    sql = text("""
        INSERT INTO jobs (id, endpoint_id, input, status, request_id, gateway_request_id,
                          status_url, response_url, cancel_url, result_pending, created_at,
                          updated_at, submitted_at, submit_attempts, poll_attempts, webhook_count)
        SELECT gen_random_uuid(), 'fal-ai/evf-sam',
               jsonb_build_object('prompt', 'object ' || g, 'image_url', 'https://example.com/cat.png'),
               'submitted', :tag || '-' || g, :tag || '-' || g,
               'https://queue.fal.run/fal-ai/evf-sam/requests/' || :tag || '-' || g || '/status',
               'https://queue.fal.run/fal-ai/evf-sam/requests/' || :tag || '-' || g,
               'https://queue.fal.run/fal-ai/evf-sam/requests/' || :tag || '-' || g || '/cancel',
               false, now(), now(), now(), 1, 0, 0
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
        from falbridge.sandbox.server import SandboxConfig, SandboxServer

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

    def __init__(self, run_dir: Path, procs: list[Proc], rate: int = 250):
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
