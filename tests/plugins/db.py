"""Database fixtures: every database test runs on SQLite and, when the PostgreSQL server
binaries are installed (pg_ctl on PATH or under /usr/lib/postgresql), on a throwaway
PostgreSQL cluster too. Schemas are built by running the Alembic migrations."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import event
from sqlalchemy.orm import Session

from falbridge.config import Config
from falbridge.devstack.services import PostgresCluster, find_pg_bin, free_port  # noqa: F401
from falbridge.models.db import dispose_all, get_engine
from falbridge.models.migrate import upgrade
from falbridge.models.tables import Base

# The cluster class lives in falbridge.devstack.services so bench/chaos.py can use it too.
PG_BIN = find_pg_bin()
BACKENDS = ["sqlite"] + (["postgresql"] if PG_BIN else [])


@pytest.fixture(scope="session")
def pg_cluster():
    if PG_BIN is None:
        pytest.skip("PostgreSQL server binaries not installed")
    cluster = PostgresCluster(PG_BIN).start()
    yield cluster
    dispose_all()
    cluster.stop()


def _fresh_database(backend: str, request) -> str:
    if backend == "postgresql":
        return request.getfixturevalue("pg_cluster").create_database("falbridge_test")
    path = Path(tempfile.mkdtemp(prefix="falbridge-sqlite-")) / "test.db"
    return f"sqlite:///{path}"


@pytest.fixture(scope="session", params=BACKENDS)
def migrated_db(request) -> str:
    """A database URL whose schema was built by `alembic upgrade head`."""
    url = _fresh_database(request.param, request)
    upgrade(url)
    return url


@pytest.fixture
def db_url(migrated_db, monkeypatch) -> str:
    """The migrated database, emptied, and DATABASE_URL pointing at it for code under test."""
    engine = get_engine(migrated_db)
    with engine.begin() as conn:
        for table in reversed(Base.metadata.sorted_tables):
            conn.execute(table.delete())
    monkeypatch.setenv("DATABASE_URL", migrated_db)
    return migrated_db


@pytest.fixture
def engine(db_url):
    return get_engine(db_url)


def config_with(**variables: str):
    """This process's configuration with some variables set, read the way a process reads
    its environment (names as in docs/configuration.md)."""
    return Config.from_environ({**os.environ, **variables})


@pytest.fixture
def commits():
    """One entry per transaction committed in this process (any session, any thread) while
    the test runs: how many transactions a batch took."""
    counted: list[int] = []

    def count(session: Session) -> None:
        counted.append(1)

    event.listen(Session, "after_commit", count)
    yield counted
    event.remove(Session, "after_commit", count)


@contextlib.contextmanager
def statements_sent() -> Iterator[list[str]]:
    """The statements this process sends to the database meanwhile, as the engine sees
    them (whitespace folded; BEGIN left out): how many a batch costs, whatever its size."""
    sent: list[str] = []

    def seen(conn, cursor, statement, parameters, context, executemany) -> None:
        if not statement.startswith("BEGIN"):
            sent.append(" ".join(statement.split()))

    engine = get_engine()
    event.listen(engine, "before_cursor_execute", seen)
    try:
        yield sent
    finally:
        event.remove(engine, "before_cursor_execute", seen)
