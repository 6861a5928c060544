"""A partial index of the sessions that may still change, for incremental passes.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copy of tables.OPEN_SESSION at this revision.
_OPEN = sa.text("(state IS NULL OR state NOT IN ('error', 'terminated'))")


def upgrade() -> None:
    op.create_index(
        "ix_livy_sessions_open",
        "livy_sessions",
        ["workspace_id", "compute_id", "create_time"],
        postgresql_where=_OPEN,
        sqlite_where=_OPEN,
    )


def downgrade() -> None:
    op.drop_index("ix_livy_sessions_open", table_name="livy_sessions")
