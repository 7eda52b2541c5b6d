"""Outbox leases (who holds an in-flight row, until when) and idempotent replay's first answer.

Rows a release before this one left in flight have no lease: they count as expired, so the
first claim after the upgrade hands them out again (as that release's start did).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("idempotency", schema=None) as batch_op:
        batch_op.add_column(sa.Column("response", sa.Text(), nullable=True))

    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("leased_by", sa.String(length=128), nullable=True))
        batch_op.add_column(sa.Column("lease_until", sa.Float(), nullable=True))

    with op.batch_alter_table("webhook_outbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("leased_by", sa.String(length=128), nullable=True))
        batch_op.add_column(sa.Column("lease_until", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("webhook_outbox", schema=None) as batch_op:
        batch_op.drop_column("lease_until")
        batch_op.drop_column("leased_by")

    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_column("lease_until")
        batch_op.drop_column("leased_by")

    with op.batch_alter_table("idempotency", schema=None) as batch_op:
        batch_op.drop_column("response")
