"""Trace context and request id with each outbox row; indexes for retention and receipts.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("idempotency", schema=None) as batch_op:
        batch_op.create_index("idempotency_age", ["created_at"], unique=False)

    with op.batch_alter_table("inbound_updates", schema=None) as batch_op:
        batch_op.add_column(sa.Column("received_at", sa.Float(), nullable=True))
        batch_op.create_index("inbound_updates_age", ["received_at"], unique=False)

    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.create_index("messages_provider_id", ["provider_message_id"], unique=False)

    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("trace_context", sa.String(length=128), nullable=True))
        batch_op.add_column(sa.Column("request_id", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_column("request_id")
        batch_op.drop_column("trace_context")

    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_index("messages_provider_id")

    with op.batch_alter_table("inbound_updates", schema=None) as batch_op:
        batch_op.drop_index("inbound_updates_age")
        batch_op.drop_column("received_at")

    with op.batch_alter_table("idempotency", schema=None) as batch_op:
        batch_op.drop_index("idempotency_age")
