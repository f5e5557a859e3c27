"""GET /readyz over real HTTP: 200 when the database, Redis, fal's keys and the schema are
all there; each one missing in turn is a 503 whose body names it (and only it)."""

from __future__ import annotations

import os

import httpx
from alembic.script import ScriptDirectory

from falbridge import config
from falbridge.models.migrate import alembic_config, upgrade
from falbridge.webhooks.app import create_app
from tests.plugins.db import free_port
from tests.plugins.pipeline import ServerThread

CHECKS = {"database", "migrations", "redis", "jwks"}


def ready(monkeypatch=None, **variables: str) -> tuple[int, dict]:
    """/readyz of an app built with `variables` set (as a process started with them)."""
    for name, value in variables.items():
        assert monkeypatch is not None
        monkeypatch.setenv(name, value)
    server = ServerThread(create_app(config.Config.from_environ(os.environ))).start()
    try:
        response = httpx.get(server.url + "/readyz", timeout=60)
        assert httpx.get(server.url + "/healthz", timeout=30).json() == {"ok": True}
    finally:
        server.stop()
    return response.status_code, response.json()


def test_ready_when_everything_answers(pipeline_env, db_url):
    status, body = ready()
    assert (status, body["ready"], body["failed"]) == (200, True, []), body
    assert set(body["checks"]) == CHECKS
    assert all(check == {"ok": True} for check in body["checks"].values())


def test_a_database_that_is_not_there(pipeline_env, db_url, monkeypatch):
    nowhere = f"postgresql+psycopg://falbridge:hunter2-password@127.0.0.1:{free_port()}/falbridge"
    status, body = ready(monkeypatch, DATABASE_URL=nowhere)
    assert (status, body["failed"]) == (503, ["database", "migrations"]), body
    assert "OperationalError" in body["checks"]["database"]["error"]
    assert "hunter2" not in str(body)  # a URL's password never in the answer


def test_a_redis_with_no_server(pipeline_env, db_url, monkeypatch):
    status, body = ready(monkeypatch, REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    assert (status, body["failed"]) == (503, ["redis"]), body
    assert "ConnectionError" in body["checks"]["redis"]["error"]


def test_fal_keys_that_cannot_be_fetched(pipeline_env, db_url, monkeypatch):
    status, body = ready(monkeypatch, FAL_JWKS_URL=f"http://127.0.0.1:{free_port()}/.well-known/jwks.json")
    assert (status, body["failed"]) == (503, ["jwks"]), body
    assert "JwksUnavailable" in body["checks"]["jwks"]["error"]


def test_a_database_one_migration_behind(pipeline_env, tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'behind.db'}"
    script = ScriptDirectory.from_config(alembic_config(url))
    head = script.get_current_head()
    previous = script.get_revision(head).down_revision
    upgrade(url, revision=str(previous))
    status, body = ready(monkeypatch, DATABASE_URL=url)
    assert (status, body["failed"]) == (503, ["migrations"]), body
    assert body["checks"]["migrations"]["error"] == (
        f"database at revision {previous}, migrations' head is {head}"
    )
    upgrade(url)
    assert ready()[0] == 200
