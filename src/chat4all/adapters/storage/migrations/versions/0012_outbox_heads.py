"""Each conversation's head in the outbox, kept (``outbox.head``), so claims and the relay walk
the conversations' heads instead of their whole backlogs.

A claim used to find the due heads by walking the pending rows oldest first and testing each
for an earlier or in-flight row of its conversation: with a backlog in few conversations that
walk read nearly every pending row each round. The flag is set where a conversation's turn
passes (accept, delivery, dead letter, replay); the walk reads an index of the heads alone.

The rows already there are marked here: the in-flight rows, then each conversation's lowest
pending row when nothing of it is in flight. ``outbox_ready`` goes (the heads' index replaces
it); ``outbox_unpublished`` holds the heads alone.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | None = None
depends_on: str | None = None

_HEADS = "state = 'pending' AND head"
_UNPUBLISHED = "state = 'pending' AND head AND published_at IS NULL"
# SQLite compares a boolean with 1: its queries imply the index's condition so spelled
_SQLITE = {
    _HEADS: "state = 'pending' AND head = 1",
    _UNPUBLISHED: "state = 'pending' AND head = 1 AND published_at IS NULL",
}


def upgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("head", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        batch_op.drop_index("outbox_ready")
    op.drop_index("outbox_unpublished", table_name="outbox")
    op.execute("UPDATE outbox SET head = true WHERE state = 'inflight'")
    op.execute(
        "UPDATE outbox SET head = true WHERE state = 'pending' AND NOT EXISTS ("
        "SELECT 1 FROM outbox AS other WHERE other.conversation_id = outbox.conversation_id "
        "AND other.state IN ('pending', 'inflight') "
        "AND (other.head OR other.seq < outbox.seq))"
    )
    for name, where in (("outbox_heads", _HEADS), ("outbox_unpublished", _UNPUBLISHED)):
        op.create_index(
            name,
            "outbox",
            ["available_at"],
            postgresql_where=sa.text(where),
            sqlite_where=sa.text(_SQLITE[where]),
        )
    if op.get_bind().dialect.name == "sqlite":
        # SQLite plans without statistics (no ANALYZE has run) and then takes an equality on
        # outbox_due's first column, the state, as selective: the claim would walk every
        # pending row instead of the heads' index. One row of statistics says what is true
        # of any backlog, few states for many rows (sqlite.org/optoverview.html#manctrl); a
        # later ANALYZE replaces it with the measured one.
        op.execute("ANALYZE sqlite_schema")  # creates sqlite_stat1
        op.execute("DELETE FROM sqlite_stat1 WHERE tbl = 'outbox' AND idx = 'outbox_due'")
        op.execute(
            "INSERT INTO sqlite_stat1 (tbl, idx, stat) "
            "VALUES ('outbox', 'outbox_due', '1000000 250000 10 1')"
        )
        op.execute("ANALYZE sqlite_schema")  # this connection reads the statistics again
    op.create_index(
        "outbox_turns",
        "outbox",
        ["conversation_id"],
        postgresql_where=sa.text("head"),
        sqlite_where=sa.text("head = 1"),
    )


def downgrade() -> None:
    op.drop_index("outbox_turns", table_name="outbox")
    op.drop_index("outbox_unpublished", table_name="outbox")
    op.drop_index("outbox_heads", table_name="outbox")
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_column("head")
        batch_op.create_index("outbox_ready", ["state", "available_at"], unique=False)
    where = sa.text("state = 'pending' AND published_at IS NULL")
    op.create_index(
        "outbox_unpublished", "outbox", ["available_at"], postgresql_where=where, sqlite_where=where
    )
