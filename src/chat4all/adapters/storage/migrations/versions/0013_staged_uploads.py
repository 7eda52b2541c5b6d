"""Resumable uploads staged in the S3 bucket (``staged_uploads``, ``staged_segments``).

With ``CHAT4ALL_MEDIA_BACKEND=s3`` an unfinished resumable upload's bytes are objects of the
bucket, and what was declared, the offset kept and which request is writing it (a lease) are
these rows: any API process takes the next chunk of an upload another one started, and none
needs a shared disk. The file backend keeps staging on its directory, as before.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "staged_uploads",
        sa.Column("id", sa.String(length=35), nullable=False),
        sa.Column("tenant", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("filename", sa.String(length=255), nullable=False),
        sa.Column("mime_type", sa.String(length=127), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=True),
        sa.Column("sha256", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("kept", sa.BigInteger(), nullable=False),
        sa.Column("written_at", sa.Float(), nullable=False),
        sa.Column("holder", sa.String(length=32), nullable=True),
        sa.Column("held_until", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("staged_uploads", schema=None) as batch_op:
        batch_op.create_index("staged_uploads_written", ["written_at"], unique=False)
    op.create_table(
        "staged_segments",
        sa.Column("upload_id", sa.String(length=35), nullable=False),
        sa.Column("start", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("upload_id", "start"),
    )


def downgrade() -> None:
    op.drop_table("staged_segments")
    with op.batch_alter_table("staged_uploads", schema=None) as batch_op:
        batch_op.drop_index("staged_uploads_written")
    op.drop_table("staged_uploads")
