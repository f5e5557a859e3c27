"""Commands that run processes: each refuses a bad configuration before it starts
anything, and `falbridge beat` really drives the sweeper."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from falbridge.models.db import transaction
from falbridge.models.jobs import create_job

BAD = {"FALBRIDGE_API_TOKENS": "short"}
SAYS = "error: configuration: FALBRIDGE_API_TOKENS: token 1 is shorter than 16 characters"


def _falbridge(
    *args: str, env: dict[str, str], without: tuple[str, ...] = (), timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    environ = {name: value for name, value in {**os.environ, **env}.items() if name not in without}
    return subprocess.run(
        [sys.executable, "-m", "falbridge", *args],
        env=environ,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.parametrize(
    "command",
    [["serve", "--port", "1"], ["worker", "--pool", "solo"], ["beat"], ["jobs", "list"], ["db", "upgrade"]],
    ids=lambda command: command[0],
)
def test_a_bad_configuration_value_stops_the_command_before_it_starts(command, tmp_path):
    # Port 1 would fail to bind if serve got as far as starting gunicorn: it must not.
    done = _falbridge(*command, env={**BAD, "FALBRIDGE_VAR_DIR": str(tmp_path)})
    assert (done.returncode, done.stderr.splitlines(), done.stdout) == (2, [SAYS], "")
    assert list(tmp_path.iterdir()) == []  # nothing started: no database, no embedded Redis


DEPLOYMENT_SECRETS = ("FAL_WEBHOOK_USER_ID", "FALBRIDGE_SECRET_KEY")


@pytest.mark.parametrize(
    "command, missing",
    [
        (["serve", "--port", "1"], "FAL_WEBHOOK_USER_ID: required by the receiver"),
        (["worker", "--pool", "solo"], "FALBRIDGE_SECRET_KEY: required by the worker"),
    ],
    ids=["serve", "worker"],
)
def test_outside_the_embedded_default_the_guarding_settings_are_required(command, missing, tmp_path):
    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}", "FAL_KEY": "k:s"}
    done = _falbridge(*command, env=env, without=DEPLOYMENT_SECRETS)
    assert (done.returncode, done.stderr.splitlines()) == (
        2,
        [f"error: configuration: {missing} outside the embedded default (docs/deployment.md)"],
    )


def test_beat_runs_the_sweeper_on_its_interval(pipeline, monkeypatch, tmp_path):
    # The sweeper's thresholds as the worker (this process) reads them: no grace at all.
    monkeypatch.setenv("FALBRIDGE_PENDING_GRACE_S", "0")
    with transaction() as s:  # stored, but its submit was never enqueued
        job, _ = create_job(s, "fal-ai/some/model", {"n": 1})
    beat = subprocess.Popen(
        [sys.executable, "-m", "falbridge", "beat", "--schedule", str(tmp_path / "schedule")],
        env={**os.environ, "FALBRIDGE_RECONCILE_INTERVAL_S": "0.5"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        [job] = pipeline.wait_terminal(job.id, timeout=30)
    finally:
        beat.terminate()
        beat.wait(10)
    assert job.status == "completed"
    assert [event.source for event in job.events][:2] == ["api", "submit"]
