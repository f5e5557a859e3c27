"""`make mutate`'s fork server (.ci/mutation_forkserver.py): each run sees the module as it
is on disk at that moment, pytest's exit status comes back as the client's, and a client
killed by cosmic-ray's timeout takes the child's whole process group with it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.plugins.waiting import poll_until

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / ".ci"))
import mutation_forkserver  # a script folder, not a package

PYTEST_ARGS = ["-q", "-p", "no:cacheprovider"]


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    (tmp_path / "subject.py").write_text("VALUE = 1\n")
    (tmp_path / "test_subject.py").write_text(
        "import subject\n\ndef test_value():\n    assert subject.VALUE == 1\n"
    )
    return tmp_path


def _run(client: list[str], tree: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*client, *PYTEST_ARGS, *args], cwd=tree, capture_output=True, text=True, timeout=60
    )


def test_each_run_sees_the_module_as_it_is_now_on_disk(tree: Path):
    env = {**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
    subject = tree / "subject.py"
    with mutation_forkserver.started(tree, subject, env) as client:
        first = _run(client, tree, "test_subject.py")
        _rewrite_keeping_mtime(subject, "VALUE = 2\n")  # same size, same second: a mutant
        second = _run(client, tree, "test_subject.py")
        _rewrite_keeping_mtime(subject, "VALUE = 1\n")
        third = _run(client, tree, "test_subject.py")

    assert (first.returncode, second.returncode, third.returncode) == (0, 1, 0), second.stdout
    assert "1 passed" in first.stdout and "1 failed" in second.stdout


def _rewrite_keeping_mtime(path: Path, text: str) -> None:
    """As a mutant written within the second of the run before: the bytecode cache the
    children write cannot tell it from the source it was compiled from."""
    before = path.stat()
    path.write_text(text)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))


def test_each_run_is_recorded_with_its_seconds_exit_status_and_cpu(tree: Path):
    times = tree / "times"
    env = {**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
    with mutation_forkserver.started(tree, tree / "subject.py", env, times) as client:
        _run(client, tree, "test_subject.py")
        (tree / "subject.py").write_text("VALUE = 2\n")
        _run(client, tree, "test_subject.py")

    runs = [line.split() for line in times.read_text().splitlines()]
    assert [status for _, status, _ in runs] == ["0", "1"]
    assert all(0 < float(seconds) < 60 and 0 < float(cpu) < 60 for seconds, _, cpu in runs)


def test_a_client_killed_mid_run_ends_the_tests_and_what_they_started(tree: Path):
    pid_file = tree / "pid"
    (tree / "test_hangs.py").write_text(
        textwrap.dedent(f"""
        import subprocess, pathlib, threading

        def test_hangs():
            started = subprocess.Popen(["sleep", "600"])
            pathlib.Path({str(pid_file)!r}).write_text(str(started.pid))
            threading.Event().wait()  # a mutant that makes the tests hang
        """)
    )
    env = {**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
    with mutation_forkserver.started(tree, tree / "subject.py", env) as client:
        hung = subprocess.Popen([*client, *PYTEST_ARGS, "test_hangs.py"], cwd=tree, start_new_session=True)
        sleeper = int(poll_until(lambda: pid_file.exists() and pid_file.read_text(), bool, timeout=30))
        os.killpg(hung.pid, signal.SIGKILL)  # as cosmic-ray does on its timeout
        hung.wait()

        poll_until(lambda: _alive(sleeper), lambda alive: not alive, timeout=10)
        assert _run(client, tree, "test_subject.py").returncode == 0  # the server goes on


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except FileNotFoundError:
        return False
    return state != "Z"
