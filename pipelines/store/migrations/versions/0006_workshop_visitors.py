"""A workshop's student is bound to the browser that joined (a keyed hash of its visitor id), so the
server can refuse the tabs the workshop hides to that visitor (issue 37).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07

Plain ADD COLUMN (nullable): students who joined before keep their rows, unbound.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("workshop_students", sa.Column("visitor", sa.String(length=64), nullable=True))
    op.create_index(op.f("ix_workshop_students_visitor"), "workshop_students", ["visitor"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_workshop_students_visitor"), table_name="workshop_students")
    op.drop_column("workshop_students", "visitor")
