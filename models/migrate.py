"""Run the Alembic migrations in `migrations/` programmatically (`falbridge db upgrade`)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext

from falbridge.config import normalize_database_url
from falbridge.models.db import database_url, get_engine

MIGRATIONS_DIR = Path(str(resources.files("falbridge.migrations")))


def alembic_config(url: str | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # ConfigParser interpolation would choke on '%' in passwords.
    config.set_main_option(
        "sqlalchemy.url", (normalize_database_url(url) if url else database_url()).replace("%", "%%")
    )
    return config


def upgrade(url: str | None = None, revision: str = "head") -> None:
    command.upgrade(alembic_config(url), revision)


def current_revision(url: str | None = None) -> str | None:
    with get_engine(url).connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()
