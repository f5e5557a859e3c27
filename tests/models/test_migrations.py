from datetime import UTC, datetime

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

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


def test_0005_numbers_the_events_already_there(migrated_db):
    """Events written before 0005 get their per-job sequence by id; the job its count."""
    engine = get_engine(migrated_db)
    with engine.begin() as conn:
        for table in reversed(Base.metadata.sorted_tables):
            conn.execute(table.delete())
    command.downgrade(alembic_config(migrated_db), "0004")
    try:
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO jobs (id, endpoint_id, input, status, result_pending, created_at, "
                    "updated_at, touched_at, submit_attempts, poll_attempts, webhook_count) VALUES "
                    "(:id, 'a/b', '{}', 'submitted', false, :t, :t, :t, 0, 0, 0)"
                ),
                {"id": JOB_ID if conn.dialect.name == "postgresql" else JOB_ID.replace("-", ""), "t": NOW},
            )
            for old, new in ((None, "pending"), ("pending", "submitted")):
                conn.execute(
                    text(
                        "INSERT INTO job_events (job_id, at, source, from_status, to_status) "
                        "VALUES (:id, :t, 'api', :old, :new)"
                    ),
                    {
                        "id": JOB_ID if conn.dialect.name == "postgresql" else JOB_ID.replace("-", ""),
                        "t": NOW,
                        "old": old,
                        "new": new,
                    },
                )
    finally:
        upgrade(migrated_db)
    with engine.begin() as conn:
        assert conn.execute(text("SELECT to_status, seq FROM job_events ORDER BY id")).all() == [
            ("pending", 1),
            ("submitted", 2),
        ]
        assert conn.execute(text("SELECT event_seq FROM jobs")).scalar_one() == 2
        conn.execute(text("DELETE FROM jobs"))


JOB_ID = "5d0c3f8e-2b1a-4c6e-9f00-0123456789ab"
NOW = datetime(2026, 11, 30, tzinfo=UTC)
