"""the changes feed: updated_at only for changes a consumer sees, touched_at for the sweeper

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("touched_at", sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE jobs SET touched_at = updated_at")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.alter_column("touched_at", existing_type=sa.DateTime(timezone=True), nullable=False)
        batch_op.drop_index("ix_jobs_status_updated_at")
        batch_op.create_index("ix_jobs_status_touched_at", ["status", "touched_at"], unique=False)
        batch_op.create_index("ix_jobs_updated_at_id", ["updated_at", "id"], unique=False)
    if op.get_context().dialect.name == "postgresql":
        op.create_index(
            "ix_jobs_metadata",
            "jobs",
            ["metadata"],
            postgresql_using="gin",
            postgresql_ops={"metadata": "jsonb_path_ops"},
        )


def downgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        op.drop_index("ix_jobs_metadata", table_name="jobs")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_jobs_updated_at_id")
        batch_op.drop_index("ix_jobs_status_touched_at")
        batch_op.create_index("ix_jobs_status_updated_at", ["status", "updated_at"], unique=False)
        batch_op.drop_column("touched_at")
