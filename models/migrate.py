"""Run the Alembic migrations in `migrations/` programmatically (`falbridge db upgrade`)."""

from __future__ import annotations

from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

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


def for_dialect(dialect: str) -> Callable[..., bool]:
    """Autogenerate's include_object hook: leaves out what the models create only on
    another database (an index with `ddl_if(dialect=...)`, e.g. PostgreSQL's GIN)."""

    def include(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
        only_on = getattr(getattr(obj, "_ddl_if", None), "dialect", None)
        return only_on is None or only_on == dialect

    return include
