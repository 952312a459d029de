"""Workshops: a class run from the app, its students and what they did at each step (issue 37).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07

New tables only: nothing existing changes.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "workshops",
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("code", sa.String(length=16), nullable=False),
        sa.Column("lessons", sa.Text(), nullable=False),
        sa.Column("tabs", sa.Text(), nullable=False),
        sa.Column("pinned", sa.Text(), nullable=False),
        sa.Column("drive", sa.String(length=128), nullable=True),
        sa.Column("reveal", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("created_by", sa.String(length=128), nullable=True),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_index(op.f("ix_workshops_code"), "workshops", ["code"], unique=True)
    op.create_table(
        "workshop_students",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("workshop", sa.String(length=128), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("joined_at", sa.Float(), nullable=False),
        sa.Column("last_seen", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["workshop"], ["workshops.name"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("workshop", "name", name="one_name_per_workshop"),
    )
    op.create_index(op.f("ix_workshop_students_workshop"), "workshop_students", ["workshop"], unique=False)
    op.create_table(
        "workshop_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("student", sa.String(length=32), nullable=False),
        sa.Column("lesson", sa.String(length=64), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("answer", sa.Text(), nullable=True),
        sa.Column("correct", sa.Boolean(), nullable=True),
        sa.Column("at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["student"], ["workshop_students.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_workshop_events_student"), "workshop_events", ["student"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_workshop_events_student"), table_name="workshop_events")
    op.drop_table("workshop_events")
    op.drop_index(op.f("ix_workshop_students_workshop"), table_name="workshop_students")
    op.drop_table("workshop_students")
    op.drop_index(op.f("ix_workshops_code"), table_name="workshops")
    op.drop_table("workshops")
