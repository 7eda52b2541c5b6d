"""Per-tenant settings an admin changes through the API (``tenant_settings``): for now the policy
for uploads over a channel's limit. A tenant without a row has the defaults, so a database made
before this revision keeps its behaviour.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "tenant_settings",
        sa.Column("tenant", sa.String(length=64), nullable=False),
        sa.Column("oversize", sa.String(length=8), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("tenant"),
    )


def downgrade() -> None:
    op.drop_table("tenant_settings")
