"""Database fixtures: every database test runs on SQLite and, when the PostgreSQL server
binaries are installed (pg_ctl on PATH or under /usr/lib/postgresql), on a throwaway
PostgreSQL cluster too. Schemas are built by running the Alembic migrations."""
from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest
from sqlalchemy import text

from models.db import dispose_all, get_engine
from models.migrate import upgrade
from models.tables import Base


def find_pg_bin() -> Path | None:
    found = shutil.which("pg_ctl")
    if found:
        return Path(os.path.realpath(found)).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(candidates[-1]).parent if candidates else None


PG_BIN = find_pg_bin()
BACKENDS = ["sqlite"] + (["postgresql"] if PG_BIN else [])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresCluster:
    """A private cluster on a free loopback port, tuned for tests (no fsync)."""

    def __init__(self, bin_dir: Path):
        self.bin = bin_dir
        self.root = Path(tempfile.mkdtemp(prefix="falbridge-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        # initdb refuses to run as root; CI runs as root, so act as the postgres user.
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self.as_user:
            shutil.chown(self.root, "postgres")
            os.chmod(self.root, 0o755)

    def _run(self, *args: str) -> None:
        subprocess.run([*self.as_user, *args], check=True, capture_output=True, cwd=self.root)

    def start(self) -> "PostgresCluster":
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres",
                  "--auth=trust", "-E", "UTF8", "--no-sync")
        opts = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
                "-c max_connections=300")
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", opts, "-w",
                  "-l", str(self.root / "log"), "start")
        return self

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        engine = get_engine(self.url())
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        return self.url(name)

    def stop(self) -> None:
        subprocess.run([*self.as_user, str(self.bin / "pg_ctl"), "-D", str(self.data),
                        "-m", "immediate", "stop"], capture_output=True, cwd=self.root)
        shutil.rmtree(self.root, ignore_errors=True)


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
