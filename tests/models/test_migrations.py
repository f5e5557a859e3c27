from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect

from falbridge.models.db import get_engine
from falbridge.models.migrate import alembic_config, current_revision, for_dialect, upgrade
from falbridge.models.tables import Base


def test_models_match_migrations(db_url):
    """Fails when a model changes without a migration (autogenerate would emit something)."""
    with get_engine(db_url).connect() as conn:
        opts = {"compare_type": True, "include_object": for_dialect(conn.dialect.name)}
        diff = compare_metadata(MigrationContext.configure(conn, opts=opts), Base.metadata)
    assert diff == []


def test_upgrade_is_at_head_and_rerunnable(db_url):
    head = ScriptDirectory.from_config(alembic_config(db_url)).get_current_head()
    upgrade(db_url)  # a second run is a no-op, not an error
    assert current_revision(db_url) == head


def test_downgrade_to_base_and_back(migrated_db):
    command.downgrade(alembic_config(migrated_db), "base")
    assert set(inspect(get_engine(migrated_db)).get_table_names()) <= {"alembic_version"}
    upgrade(migrated_db)
    assert {"jobs", "result_files", "job_events", "webhook_deliveries"} <= set(
        inspect(get_engine(migrated_db)).get_table_names()
    )
