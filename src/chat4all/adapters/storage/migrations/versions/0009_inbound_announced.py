"""When each received message was told to the tenant's clients (``inbound_updates.announced_at``).

A message whose files are still being downloaded is stored at once (the provider gets its 200)
and announced afterwards; ``NULL`` marks it as not announced yet, so a process that dies in
between leaves it to the next sweep instead of losing the announcement. What a release before
this one stored was announced with its write: it gets its ``received_at``.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("inbound_updates", schema=None) as batch_op:
        batch_op.add_column(sa.Column("announced_at", sa.Float(), nullable=True))
    op.execute("UPDATE inbound_updates SET announced_at = received_at WHERE announced_at IS NULL")


def downgrade() -> None:
    with op.batch_alter_table("inbound_updates", schema=None) as batch_op:
        batch_op.drop_column("announced_at")
