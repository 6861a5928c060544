"""session_state_changes without its foreign key to livy_sessions.

The page statement writes a session and its state change together, and sessions are
never deleted, so the key guarded nothing; its check locked the session row of every
state change (FOR KEY SHARE: a write per row) and cost a sixth of a first pass.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_FK = "fk_session_state_changes_session_id_livy_sessions"


def upgrade() -> None:
    # SQLite cannot drop a constraint in place: batch mode copies the table.
    with op.batch_alter_table("session_state_changes") as batch:
        batch.drop_constraint(_FK, type_="foreignkey")


def downgrade() -> None:
    with op.batch_alter_table("session_state_changes") as batch:
        batch.create_foreign_key(
            _FK, "livy_sessions", ["session_id"], ["session_id"], ondelete="CASCADE"
        )
