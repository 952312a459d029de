"""Jobs report a heartbeat (a replica on another host can tell a dead job from a running one);
label drives lose the serve counter they never needed (the drive row is locked by reading it).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02

Both are plain ALTER TABLE statements, on SQLite too (ADD COLUMN, and DROP COLUMN since SQLite
3.35): no table is copied and dropped, which with foreign keys on would cascade-delete rows that
point at it.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("heartbeat_at", sa.Float(), nullable=True))
    op.drop_column("pref_drives", "serves")


def downgrade() -> None:
    op.add_column("pref_drives", sa.Column("serves", sa.Integer(), nullable=False, server_default="0"))
    op.drop_column("jobs", "heartbeat_at")
