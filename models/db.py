"""Engines and transactions.

One engine per (process, URL): Celery's prefork children and gunicorn workers must not
share pooled connections with their parent, so the cache is keyed by pid.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import ColumnElement, Engine, Insert, Table, create_engine, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry
from sqlalchemy.sql.schema import ScalarElementColumnDefault

from falbridge import config
from falbridge.config import normalize_database_url

_engines: dict[tuple[int, str], Engine] = {}
# One sessionmaker per engine: building one defines a Session subclass and sets up its
# event dispatch, which cost more CPU than the receiver's whole INSERT (bench/ profile).
_factories: dict[Engine, sessionmaker[Session]] = {}


def database_url() -> str:
    """The configured database (DATABASE_URL, else SQLite under FALBRIDGE_VAR_DIR)."""
    return config.current().database.resolved_url()


def get_engine(url: str | None = None) -> Engine:
    url = normalize_database_url(url) if url else database_url()
    key = (os.getpid(), url)
    engine = _engines.get(key)
    if engine is None:
        engine = _create(url)
        _engines[key] = engine
    return engine


def _create(url: str) -> Engine:
    if url.startswith("sqlite"):
        # The driver's own transaction handling is turned off so that every
        # transaction starts with BEGIN IMMEDIATE: a deferred transaction that later
        # writes can fail with "database is locked" instead of waiting its turn.
        engine = create_engine(url, connect_args={"timeout": 30, "isolation_level": None})
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN IMMEDIATE"))
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


def _sqlite_pragmas(dbapi_conn: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def session_factory(engine: Engine | None = None) -> sessionmaker[Session]:
    engine = engine or get_engine()
    factory = _factories.get(engine)
    if factory is None:
        factory = _factories[engine] = sessionmaker(bind=engine, expire_on_commit=False)
    return factory


@contextmanager
def transaction(engine: Engine | None = None) -> Iterator[Session]:
    """One unit of work: commits on success, rolls back on any exception."""
    with session_factory(engine)() as session, session.begin():
        yield session


@contextmanager
def snapshot(engine: Engine | None = None) -> Iterator[Session]:
    """A transaction whose reads all see one moment: a job read with its files, stored
    files and events (several statements) never shows a file stored without the event
    written in the same commit. PostgreSQL's default takes a new snapshot per statement,
    so this one asks for REPEATABLE READ; SQLite's transactions are one snapshot already."""
    with transaction(engine) as session:
        if session.get_bind().dialect.name == "postgresql":
            session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        yield session


def insert_unless_taken(dialect: str, target: Table | type[Any], *key_columns: ColumnElement[Any]) -> Insert:
    """`INSERT ... ON CONFLICT (key_columns) DO NOTHING` into `target` (a table or a mapped
    class): the unique index decides, so racing inserters leave one row, and the loser's
    RETURNING comes back empty instead of raising. One statement, no savepoint."""
    if dialect == "postgresql":
        return postgresql.insert(target).on_conflict_do_nothing(index_elements=list(key_columns))
    if dialect == "sqlite":
        return sqlite.insert(target).on_conflict_do_nothing(index_elements=list(key_columns))
    raise NotImplementedError(f"INSERT ... ON CONFLICT is not available on {dialect} here")


def unset_columns(table: Table, *given: str) -> dict[str, Any]:
    """The columns of `table` but its primary key and `given`, each with what the ORM
    would write when a row leaves it out (its scalar default, else NULL): spread under
    each row of a multi-row INSERT, whose rows must all name the same columns."""
    return {
        column.name: column.default.arg if isinstance(column.default, ScalarElementColumnDefault) else None
        for column in table.columns
        if not column.primary_key and column.name not in given
    }


def dispose_all() -> None:
    for engine in _engines.values():
        engine.dispose()
    _engines.clear()
    _factories.clear()
