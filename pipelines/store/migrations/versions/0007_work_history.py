"""A signed-in person's recent work per tab, kept on the server for their other devices (issue 43).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07

A new table only: nothing existing changes.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "work_history",
        sa.Column("user", sa.String(length=128), nullable=False),
        sa.Column("tab", sa.String(length=32), nullable=False),
        sa.Column("entries", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.Column("cleared_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("user", "tab"),
    )


def downgrade() -> None:
    op.drop_table("work_history")
