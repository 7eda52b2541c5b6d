"""When each outbound message reached its provider (``messages.sent_at``), for watermark
receipts ("every message sent up to this time was delivered / read").

Messages a release before this one sent get the time of their ``sent`` event, so a watermark
arriving after the upgrade covers them too.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sent_at", sa.Float(), nullable=True))
        batch_op.create_index("messages_sent", ["conversation_id", "sent_at"], unique=False)
    op.execute(
        "UPDATE messages SET sent_at = (SELECT MIN(e.at) FROM status_events e "
        "WHERE e.message_id = messages.id AND e.status = 'sent') "
        "WHERE direction = 'outbound' AND sent_at IS NULL"
    )


def downgrade() -> None:
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_index("messages_sent")
        batch_op.drop_column("sent_at")
