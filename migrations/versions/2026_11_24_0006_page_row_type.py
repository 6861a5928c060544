"""The composite type a page of sessions travels as on PostgreSQL (store.PAGE_ROW_TYPE).

A page is sent as one array of these rows and unnested by the page statement. SQLite
has no types and reads its pages from a JSON document instead.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copy of store._RECORD_FIELDS at this revision.
_FIELDS = (
    ("session_id", "text"),
    ("workspace_id", "text"),
    ("compute_id", "text"),
    ("region_id", "text"),
    ("name", "text"),
    ("state", "text"),
    ("spark_conf", "text"),
    ("spark_conf_raw", "text"),
    ("proxy_user", "text"),
    ("queue", "text"),
    ("info", "text"),
    ("web_ui", "text"),
    ("create_time_ms", "bigint"),
    ("end_time_ms", "bigint"),
    ("cu_hours", "text"),
    ("vcore_seconds", "bigint"),
    ("mb_seconds", "bigint"),
    ("raw", "text"),
)


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        fields = ", ".join(f"{name} {pg_type}" for name, pg_type in _FIELDS)
        op.execute(f"CREATE TYPE livy_sessions_page_row AS ({fields})")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TYPE livy_sessions_page_row")
