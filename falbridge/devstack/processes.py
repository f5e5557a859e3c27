"""Child processes the way an orchestrator runs them: each in its own session (so one
`killpg` takes down a gunicorn master with its workers, or a Celery worker with its pool
children, exactly as a container's SIGKILL would), with its output appended to a log file.

Also the two ways to know a child is ready, both polling with a deadline and failing as
soon as the child exits: an HTTP URL that answers (`wait_http`) and a line in its log
(`wait_log`). Nothing here runs in production.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Launch:
    """Everything needed to start a process, kept so the same one can be started again
    (a restart after a SIGKILL appends to the same log)."""

    name: str
    argv: tuple[str, ...]
    log_path: Path
    env: Mapping[str, str] | None = None  # None: this process's environment
    cwd: Path | None = None


@dataclass
class ProcessGroup:
    """One started child and every process it forks (they share its process group)."""

    launch: Launch
    popen: subprocess.Popen[bytes]
    log_offset: int  # where this start's output begins in the (shared, appended) log
    started: float = field(default_factory=time.monotonic)
    # Set once the group was SIGKILLed after its leader was reaped: it is empty, and its id
    # may be reused by an unrelated process, so it is never signalled again.
    finished: bool = field(default=False, init=False)

    @classmethod
    def start(cls, launch: Launch) -> ProcessGroup:
        """Start `launch` in a new session; a header line in the log marks where this
        start begins, so a restarted process is never judged by its predecessor's lines."""
        launch.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(launch.log_path, "ab") as out:
            header = f"\n=== {time.strftime('%H:%M:%S')} start {launch.name}: {' '.join(launch.argv)}\n"
            out.write(header.encode())
            out.flush()
            offset = out.tell()
            popen = subprocess.Popen(
                launch.argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=None if launch.env is None else dict(launch.env),
                cwd=launch.cwd,
                start_new_session=True,
            )
        return cls(launch, popen, offset)

    @property
    def name(self) -> str:
        return self.launch.name

    @property
    def log_path(self) -> Path:
        return self.launch.log_path

    def poll(self) -> int | None:
        return self.popen.poll()

    def alive(self) -> bool:
        return self.popen.poll() is None

    def signal(self, sig: int) -> None:
        """Signal the whole group: children the leader left behind included."""
        if self.finished:
            return
        with contextlib.suppress(ProcessLookupError):  # the group is already gone
            os.killpg(self.popen.pid, sig)

    def kill(self) -> None:
        """SIGKILL the group, as a crash or an orchestrator would."""
        stop_all([self], grace_s=0.0)

    def stop(self, grace_s: float = 10.0) -> None:
        stop_all([self], grace_s)

    def pids(self) -> list[int]:
        return group_pids(self.popen.pid)

    def rss_kib(self) -> int:
        return rss_kib(self.pids())

    def cpu_s(self) -> float:
        return cpu_seconds(self.pids())

    def output(self) -> bytes:
        """What this start has logged so far."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(self.log_offset)
                return f.read()
        except OSError:
            return b""

    def logged(self, marker: bytes) -> bool:
        return marker in self.output()

    def log_tail(self, lines: int = 20) -> str:
        return "\n".join(self.output().decode(errors="replace").splitlines()[-lines:])


def stop_all(groups: Sequence[ProcessGroup], grace_s: float = 10.0) -> None:
    """SIGTERM every group, give them `grace_s` together to exit, then SIGKILL each group
    anyway: a prefork pool's children can outlive their parent, and must not outlive us."""
    if grace_s > 0:
        for group in groups:
            if group.alive():
                group.signal(signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for group in groups:
        if grace_s > 0:
            _reap(group.popen, max(0.1, deadline - time.monotonic()))
        group.signal(signal.SIGKILL)
        _reap(group.popen, 10.0)
        group.finished = group.popen.returncode is not None


def _reap(popen: subprocess.Popen[bytes], timeout: float) -> None:
    # A process stuck in the kernel may not die in time; the caller goes on regardless.
    with contextlib.suppress(subprocess.TimeoutExpired):
        popen.wait(timeout)


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Hold SIGINT and SIGTERM (delivered afterwards): a second Ctrl-C during a teardown
    must not cut it short and orphan children. Only the main thread receives them."""
    held = {signal.SIGINT, signal.SIGTERM}
    main = threading.current_thread() is threading.main_thread()
    if main:
        signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        if main:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, held)


# -- readiness ------------------------------------------------------------------------

# What is waited on: one of ours, or a bare Popen started elsewhere (a test's).
Watched = ProcessGroup | subprocess.Popen[Any]


def wait_until(ready: Callable[[], bool], proc: Watched, *, what: str, timeout: float) -> None:
    """Poll `ready` until it holds; raise as soon as `proc` exits (with its log's tail),
    or once `timeout` has passed."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(_exited(proc))
        if ready():
            return
        if time.monotonic() > deadline:
            where = f"; see {proc.log_path}" if isinstance(proc, ProcessGroup) else ""
            raise RuntimeError(f"{what} not within {timeout:.0f} s{where}")
        time.sleep(0.05)


def wait_http(url: str, proc: Watched, timeout: float = 60.0) -> None:
    """Return once `url` answers with a status below 500."""
    wait_until(lambda: _answers(url), proc, what=f"no answer from {url}", timeout=timeout)


def wait_log(proc: ProcessGroup, marker: bytes, timeout: float = 60.0) -> None:
    """Return once this start of `proc` has logged `marker` (for processes whose only
    sign of readiness is a log line, like Celery's "<node> ready.")."""
    what = f"{proc.name} logged no {marker.decode(errors='replace')!r}"
    wait_until(lambda: proc.logged(marker), proc, what=what, timeout=timeout)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1.0).status_code < 500
    except httpx.HTTPError:
        return False


def _exited(proc: Watched) -> str:
    if isinstance(proc, ProcessGroup):
        return f"{proc.name} exited with {proc.popen.returncode}:\n{proc.log_tail()}"
    args = proc.args
    shown = " ".join(map(str, args)) if isinstance(args, list | tuple) else str(args)
    return f"{shown} exited with {proc.returncode}; see its log"


# -- /proc accounting -------------------------------------------------------------------


def _proc_stats() -> Iterator[tuple[int, list[str]]]:
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
    """Every live process in process group `pgid` (a child started in its own session)."""
    return [pid for pid, fields in _proc_stats() if int(fields[2]) == pgid and fields[0] != "Z"]


def children_of(parent: int) -> list[int]:
    return [pid for pid, fields in _proc_stats() if int(fields[1]) == parent]


def rss_kib(pids: Iterable[int]) -> int:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass  # it exited meanwhile
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
