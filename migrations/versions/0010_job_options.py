"""a job's fal options (priority, start timeout, object lifecycle, payload storage, tags),
sent as fal's headers on every submit; priority in a column of its own for ordering claims

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("options", JSON, nullable=True))
        batch_op.add_column(
            sa.Column("priority", sa.String(length=8), nullable=False, server_default=sa.text("'normal'"))
        )


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("priority")
        batch_op.drop_column("options")
