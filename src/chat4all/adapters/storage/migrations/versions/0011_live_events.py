"""The tenants' live events, stored (``live_events``): SSE and gRPC streams resume from them.

Each event a client can watch live (``message.status``, ``message.inbound``) gets a row in the
transaction that makes the change; its id is the event's id on every API process, so a client
that reconnects anywhere (SSE ``Last-Event-ID``, gRPC ``resume_token``) is replayed what it
missed. Retention forgets old rows like idempotency keys.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "live_events",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("tenant", sa.String(length=64), nullable=False),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("data", sa.Text(), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("live_events", schema=None) as batch_op:
        batch_op.create_index("live_events_at", ["at"], unique=False)
        batch_op.create_index("live_events_replay", ["tenant", "id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("live_events", schema=None) as batch_op:
        batch_op.drop_index("live_events_replay")
        batch_op.drop_index("live_events_at")
    op.drop_table("live_events")
