"""`falbridge purge`: bad ages are one `error:` line and exit 2; the dry run prints what a
run then removes; two purges started as separate processes at once remove each row once."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner

from falbridge.cli import main
from falbridge.models.db import transaction
from falbridge.worker.storage.backend import open_backend
from tests.worker.purge_history import PER_COMPLETED, add_job, counts

OLD = datetime.now(UTC) - timedelta(days=120)


@pytest.fixture
def purge_cli(db_url, tmp_path, monkeypatch):
    monkeypatch.setenv("FALBRIDGE_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("FALBRIDGE_STORAGE_URL", f"file://{tmp_path / 'files'}")
    runner = CliRunner()

    def run(*args: str):
        return runner.invoke(main, ["purge", *args], prog_name="falbridge")

    return run


def _old_jobs(tmp_path, n: int) -> None:
    backend = open_backend(f"file://{tmp_path / 'files'}")
    with transaction() as session:
        for i in range(n):
            add_job(session, backend, "completed", OLD + timedelta(seconds=i))


def _one_error(result) -> str:
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


@pytest.mark.parametrize("age", ["90x", "90", "d", "0d", "-1d", "1.5d"])
def test_an_age_it_cannot_read_is_one_error_line(purge_cli, age):
    assert "--older-than" in _one_error(purge_cli("--older-than", age))


def test_without_an_age_it_says_where_one_comes_from(purge_cli):
    assert "FALBRIDGE_PURGE_OLDER_THAN" in _one_error(purge_cli())


def test_a_bad_purge_variable_stops_it_before_it_starts(purge_cli, monkeypatch):
    monkeypatch.setenv("FALBRIDGE_PURGE_OLDER_THAN", "3 months")
    assert "FALBRIDGE_PURGE_OLDER_THAN" in _one_error(purge_cli("--dry-run"))


def test_the_dry_run_prints_what_the_run_then_removes(purge_cli, tmp_path):
    _old_jobs(tmp_path, 3)

    dry = purge_cli("--older-than", "90d", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert dry.stdout.startswith("would remove (finished before ")
    expected = " ".join(f"{name}={3 * count}" for name, count in PER_COMPLETED.items())
    assert f"): {expected} file_bytes=" in dry.stdout
    with transaction() as session:
        assert counts(session)["jobs"] == 3

    done = purge_cli("--older-than", "90d", "--batch", "2")
    assert done.exit_code == 0, done.output
    assert done.stdout.startswith("removed (finished before ")
    assert f"): {expected} file_bytes=" in done.stdout
    assert " files_deleted=3 batches=2 " in done.stdout
    with transaction() as session:
        assert set(counts(session).values()) == {0}


def test_the_variables_are_its_defaults(purge_cli, tmp_path, monkeypatch):
    _old_jobs(tmp_path, 1)
    monkeypatch.setenv("FALBRIDGE_PURGE_OLDER_THAN", "200d")
    assert purge_cli().stdout.startswith("removed (") and counts_now()["jobs"] == 1  # not old enough
    monkeypatch.setenv("FALBRIDGE_PURGE_OLDER_THAN", "90d")
    monkeypatch.setenv("FALBRIDGE_PURGE_COMPACT", "1")
    out = purge_cli().stdout
    assert out.startswith("compacted (") and " jobs=1 " in out
    assert counts_now()["jobs"] == 1
    assert purge_cli("--no-compact").stdout.startswith("removed (")  # the option wins
    assert counts_now()["jobs"] == 0


def counts_now() -> dict[str, int]:
    with transaction() as session:
        return counts(session)


def test_two_purge_processes_at_once_remove_each_row_once(db_url, tmp_path):
    _old_jobs(tmp_path, 60)
    env = {
        **os.environ,
        "DATABASE_URL": db_url,
        "FALBRIDGE_VAR_DIR": str(tmp_path / "var"),
        "FALBRIDGE_STORAGE_URL": f"file://{tmp_path / 'files'}",
    }
    argv = [sys.executable, "-m", "falbridge", "purge", "--older-than", "90d", "--batch", "5"]
    procs = [
        subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in "ab"
    ]
    outputs = [proc.communicate(timeout=120) for proc in procs]

    assert [proc.returncode for proc in procs] == [0, 0], outputs
    removed = [int(re.search(r" jobs=(\d+) ", out).group(1)) for out, _ in outputs]
    deleted = [int(re.search(r" files_deleted=(\d+) ", out).group(1)) for out, _ in outputs]
    assert (sum(removed), sum(deleted)) == (60, 60), outputs
    assert set(counts_now().values()) == {0}
