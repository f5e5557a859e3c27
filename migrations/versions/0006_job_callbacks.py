"""a job's own callbacks: notify_url and on_complete, delivered through the outbox; the
deployment's notify secret

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("notify_url", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("on_complete", sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column("on_complete_queue", sa.String(length=255), nullable=True))
    with op.batch_alter_table("event_deliveries", schema=None) as batch_op:
        batch_op.alter_column("subscription_id", existing_type=sa.Uuid(), nullable=True)
        batch_op.add_column(
            sa.Column("target", sa.String(length=16), nullable=False, server_default="subscription")
        )
    with op.batch_alter_table("event_deliveries", schema=None) as batch_op:
        batch_op.create_check_constraint("target", "target IN ('subscription', 'notify_url', 'on_complete')")
        batch_op.create_index(
            "ux_event_deliveries_job_target",
            ["event_id", "target"],
            unique=True,
            sqlite_where=sa.text("subscription_id IS NULL"),
            postgresql_where=sa.text("subscription_id IS NULL"),
        )
    op.create_table(
        "deployment_secrets",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("secret_encrypted", sa.LargeBinary(), nullable=False),
        sa.Column("previous_secret_encrypted", sa.LargeBinary(), nullable=True),
        sa.Column("previous_secret_expires_at", TIME, nullable=True),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("rotated_at", TIME, nullable=True),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_deployment_secrets")),
    )


def downgrade() -> None:
    op.drop_table("deployment_secrets")
    op.execute("DELETE FROM event_deliveries WHERE subscription_id IS NULL")
    with op.batch_alter_table("event_deliveries", schema=None) as batch_op:
        batch_op.drop_index("ux_event_deliveries_job_target")
        batch_op.drop_constraint(op.f("ck_event_deliveries_target"), type_="check")
        batch_op.drop_column("target")
        batch_op.alter_column("subscription_id", existing_type=sa.Uuid(), nullable=False)
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("on_complete_queue")
        batch_op.drop_column("on_complete")
        batch_op.drop_column("notify_url")
