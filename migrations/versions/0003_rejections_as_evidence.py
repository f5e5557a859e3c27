"""rejected deliveries kept as evidence: digest, length, a short prefix, a reason code

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("webhook_deliveries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("body_sha256", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("body_length", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("rejected_as", sa.String(length=32), nullable=True))
        batch_op.create_index("ix_webhook_deliveries_rejected", ["verified", "received_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("webhook_deliveries", schema=None) as batch_op:
        batch_op.drop_index("ix_webhook_deliveries_rejected")
        batch_op.drop_column("rejected_as")
        batch_op.drop_column("body_length")
        batch_op.drop_column("body_sha256")
