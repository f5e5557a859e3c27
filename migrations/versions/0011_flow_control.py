"""Flow control and batched submit: jobs.submit_retry_at (a refused submit waits until
then), an index to count the pending jobs under a submit lease, and the submit rate
limit's token bucket

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("submit_retry_at", TIME, nullable=True))
        batch_op.create_index(
            "ix_jobs_status_submit_lease_until", ["status", "submit_lease_until"], unique=False
        )
    op.create_table(
        "submit_tokens",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("tokens", sa.Float(), nullable=False),
        sa.Column("refilled_at", TIME, nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_submit_tokens")),
    )


def downgrade() -> None:
    op.drop_table("submit_tokens")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_jobs_status_submit_lease_until")
        batch_op.drop_column("submit_retry_at")
