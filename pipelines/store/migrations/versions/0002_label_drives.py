"""Label drives: drives, their items (with gold answers) and the items served to annotators.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pref_drives",
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("overlap", sa.Integer(), nullable=False),
        sa.Column("gold_threshold", sa.Float(), nullable=False),
        sa.Column("gold_rate", sa.Float(), nullable=False),
        sa.Column("lease_seconds", sa.Float(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("created_by", sa.String(length=128), nullable=True),
        sa.Column("serves", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "pref_assignments",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("drive", sa.String(length=128), nullable=False),
        sa.Column("item_id", sa.String(length=32), nullable=False),
        sa.Column("annotator", sa.String(length=128), nullable=False),
        sa.Column("served_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["item_id"], ["pref_items.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("item_id", "annotator", name="one_assignment_per_annotator"),
    )
    op.create_index(op.f("ix_pref_assignments_annotator"), "pref_assignments", ["annotator"], unique=False)
    op.create_index(op.f("ix_pref_assignments_drive"), "pref_assignments", ["drive"], unique=False)
    op.create_index(op.f("ix_pref_assignments_item_id"), "pref_assignments", ["item_id"], unique=False)
    op.create_table(
        "pref_drive_items",
        sa.Column("item_id", sa.String(length=32), nullable=False),
        sa.Column("drive", sa.String(length=128), nullable=False),
        sa.Column("gold", sa.Text(), nullable=True),
        sa.Column("added_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["drive"], ["pref_drives.name"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["item_id"], ["pref_items.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("item_id"),
    )
    op.create_index(op.f("ix_pref_drive_items_drive"), "pref_drive_items", ["drive"], unique=False)


def downgrade() -> None:
    for table in ("pref_drive_items", "pref_assignments", "pref_drives"):
        op.drop_table(table)
