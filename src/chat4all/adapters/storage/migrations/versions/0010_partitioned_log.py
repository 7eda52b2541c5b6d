"""The partitioned log: what the relay published (``outbox.published_at``, ``published_gen``)
and the workers' leases on the log's partitions (``partition_leases``, ``partition_workers``).

Rows of a release before this one are unpublished (``NULL``): a relay publishes them at its
first round.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "partition_leases",
        sa.Column("log", sa.String(length=64), nullable=False),
        sa.Column("partition", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("holder", sa.String(length=128), nullable=True),
        sa.Column("lease_until", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("log", "partition"),
    )
    op.create_table(
        "partition_workers",
        sa.Column("log", sa.String(length=64), nullable=False),
        sa.Column("worker", sa.String(length=128), nullable=False),
        sa.Column("alive_until", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("log", "worker"),
    )
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("published_at", sa.Float(), nullable=True))
        batch_op.add_column(
            sa.Column("published_gen", sa.Integer(), server_default="0", nullable=False)
        )
    where = sa.text("state = 'pending' AND published_at IS NULL")
    op.create_index(
        "outbox_unpublished",
        "outbox",
        ["available_at"],
        postgresql_where=where,
        sqlite_where=where,
    )


def downgrade() -> None:
    op.drop_index("outbox_unpublished", table_name="outbox")
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_column("published_gen")
        batch_op.drop_column("published_at")
    op.drop_table("partition_workers")
    op.drop_table("partition_leases")
