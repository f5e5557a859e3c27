"""Only the embedded demo runs the API without authentication, and it says so."""

from __future__ import annotations

import os

import pytest

from falbridge.devstack import demo_stack, stack


@pytest.fixture
def no_children(monkeypatch, redis_url, tmp_path):
    """demo_stack with its child processes replaced by a record of the env they would get."""
    spawned = []

    class Child:
        def alive(self):
            return True

    def spawn(self, name, argv, *, log=None, env=None):
        spawned.append((name, {**self.env, **(env or {})}))
        return Child()

    monkeypatch.setattr(stack.LocalStack, "spawn", spawn)
    monkeypatch.setattr(stack, "wait_http", lambda *args: None)
    monkeypatch.setattr(stack, "wait_log", lambda *args: None)
    saved = dict(os.environ)
    os.environ["REDIS_URL"] = redis_url  # the session's Redis: no embedded one to start
    for name in ("FALBRIDGE_API_AUTH", "FALBRIDGE_API_TOKENS", "DATABASE_URL"):
        os.environ.pop(name, None)
    yield spawned
    os.environ.clear()
    os.environ.update(saved)


def test_the_sandbox_demo_turns_auth_off_and_says_so(no_children, tmp_path, capsys):
    with demo_stack.demo_stack(tmp_path / "demo", real_fal=False):
        pass
    assert "API authentication is OFF (embedded demo only)" in capsys.readouterr().out
    receiver_env = dict(no_children)["receiver"]
    assert receiver_env["FALBRIDGE_API_AUTH"] == "off"


def test_the_real_fal_demo_keeps_auth_on(no_children, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("FALBRIDGE_RECEIVER_PORT", "18000")
    with demo_stack.demo_stack(tmp_path / "demo", real_fal=True):
        pass
    assert "authentication is OFF" not in capsys.readouterr().out
    assert "FALBRIDGE_API_AUTH" not in dict(no_children)["receiver"]
