"""input_uploads and job_inputs: which input files were uploaded through falbridge (found
by URL when a job names one) and which jobs reference each content-addressed copy (the
purge deletes a copy nobody references)

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIME = sa.DateTime(timezone=True)
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "input_uploads",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("content_type", sa.String(length=255), nullable=False),
        sa.Column("storage_key", sa.Text(), nullable=True),
        sa.Column("uploaded_at", TIME, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_input_uploads")),
        sa.UniqueConstraint("url", name=op.f("uq_input_uploads_url")),
    )
    op.create_index(op.f("ix_input_uploads_sha256"), "input_uploads", ["sha256"], unique=False)
    op.create_index(op.f("ix_input_uploads_uploaded_at"), "input_uploads", ["uploaded_at"], unique=False)
    op.create_table(
        "job_inputs",
        sa.Column("job_id", sa.Uuid(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_job_inputs_job_id_jobs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("job_id", "sha256", name=op.f("pk_job_inputs")),
    )
    op.create_index(op.f("ix_job_inputs_sha256"), "job_inputs", ["sha256"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_job_inputs_sha256"), table_name="job_inputs")
    op.drop_table("job_inputs")
    op.drop_index(op.f("ix_input_uploads_uploaded_at"), table_name="input_uploads")
    op.drop_index(op.f("ix_input_uploads_sha256"), table_name="input_uploads")
    op.drop_table("input_uploads")
