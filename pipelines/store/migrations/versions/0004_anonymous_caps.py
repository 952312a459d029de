"""Public label drives resist one person posing as many: assignments keep the client's address (a
keyed hash), and a drive may be closed to anonymous visitors.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06

Plain ADD COLUMN on SQLite too (no table copied): `signed_in_only` is NOT NULL with a server
default, so existing drives stay open to whoever could label them before.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("pref_assignments", sa.Column("client", sa.String(length=64), nullable=True))
    op.create_index(op.f("ix_pref_assignments_client"), "pref_assignments", ["client"], unique=False)
    op.add_column("pref_drives", sa.Column("signed_in_only", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    op.drop_column("pref_drives", "signed_in_only")
    op.drop_index(op.f("ix_pref_assignments_client"), table_name="pref_assignments")
    op.drop_column("pref_assignments", "client")
