"""Initial schema: sessions, state changes, runs, targets.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of the column types at this revision (never import live models here).
document = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
identity = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
timestamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "livy_sessions",
        sa.Column("session_id", sa.Text(), nullable=False),
        sa.Column("workspace_id", sa.Text(), nullable=False),
        sa.Column("compute_id", sa.Text(), nullable=False),
        sa.Column("region_id", sa.Text()),
        sa.Column("name", sa.Text()),
        sa.Column("state", sa.Text()),
        sa.Column("spark_conf", document),
        sa.Column("spark_conf_raw", sa.Text()),
        sa.Column("proxy_user", sa.Text()),
        sa.Column("queue", sa.Text()),
        sa.Column("info", sa.Text()),
        sa.Column("web_ui", sa.Text()),
        sa.Column("create_time", timestamp),
        sa.Column("end_time", timestamp),
        sa.Column("cu_hours", sa.Numeric()),
        sa.Column("vcore_seconds", sa.BigInteger()),
        sa.Column("mb_seconds", sa.BigInteger()),
        sa.Column("raw", document, nullable=False),
        sa.Column("first_seen_at", timestamp, nullable=False),
        sa.Column("updated_at", timestamp, nullable=False),
        sa.Column("gone_at", timestamp),
        sa.PrimaryKeyConstraint("session_id", name=op.f("pk_livy_sessions")),
    )
    op.create_index(
        op.f("ix_livy_sessions_workspace_id_compute_id_create_time"),
        "livy_sessions",
        ["workspace_id", "compute_id", "create_time"],
    )
    op.create_index(op.f("ix_livy_sessions_create_time"), "livy_sessions", ["create_time"])

    op.create_table(
        "session_state_changes",
        sa.Column("id", identity, autoincrement=True, nullable=False),
        sa.Column("session_id", sa.Text(), nullable=False),
        sa.Column("from_state", sa.Text()),
        sa.Column("to_state", sa.Text()),
        sa.Column("observed_at", timestamp, nullable=False),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["livy_sessions.session_id"],
            name=op.f("fk_session_state_changes_session_id_livy_sessions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_session_state_changes")),
    )
    op.create_index(
        op.f("ix_session_state_changes_session_id_observed_at"),
        "session_state_changes",
        ["session_id", "observed_at"],
    )
    op.create_index(
        op.f("ix_session_state_changes_observed_at"), "session_state_changes", ["observed_at"]
    )

    counter = {"nullable": False, "server_default": sa.text("0")}
    op.create_table(
        "harvest_runs",
        sa.Column("id", identity, autoincrement=True, nullable=False),
        sa.Column("workspace_id", sa.Text(), nullable=False),
        sa.Column("compute_id", sa.Text(), nullable=False),
        sa.Column("region_id", sa.Text()),
        sa.Column("started_at", timestamp, nullable=False),
        sa.Column("finished_at", timestamp),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("mode", sa.Text(), nullable=False),
        sa.Column("requests", sa.Integer(), **counter),
        sa.Column("pages", sa.Integer(), **counter),
        sa.Column("sessions_seen", sa.Integer(), **counter),
        sa.Column("sessions_inserted", sa.Integer(), **counter),
        sa.Column("sessions_updated", sa.Integer(), **counter),
        sa.Column("sessions_unchanged", sa.Integer(), **counter),
        sa.Column("sessions_skipped", sa.Integer(), **counter),
        sa.Column("invalid_values", sa.Integer(), **counter),
        sa.Column("error", sa.Text()),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_harvest_runs")),
    )
    op.create_index(
        op.f("ix_harvest_runs_workspace_id_compute_id_started_at"),
        "harvest_runs",
        ["workspace_id", "compute_id", "started_at"],
    )
    op.create_index(op.f("ix_harvest_runs_status"), "harvest_runs", ["status"])

    op.create_table(
        "harvest_targets",
        sa.Column("workspace_id", sa.Text(), nullable=False),
        sa.Column("compute_id", sa.Text(), nullable=False),
        sa.Column("region_id", sa.Text(), nullable=False),
        sa.Column("name", sa.Text()),
        sa.Column("origin", sa.Text(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False, server_default=sa.text("true")),
        sa.Column("first_seen_at", timestamp, nullable=False),
        sa.Column("last_seen_at", timestamp, nullable=False),
        sa.Column("last_run_id", sa.BigInteger()),
        sa.Column("last_success_at", timestamp),
        sa.Column("last_full_pass_at", timestamp),
        sa.Column("checkpoint", document),
        sa.PrimaryKeyConstraint("workspace_id", "compute_id", name=op.f("pk_harvest_targets")),
    )


def downgrade() -> None:
    op.drop_table("harvest_targets")
    op.drop_index(op.f("ix_harvest_runs_status"), table_name="harvest_runs")
    op.drop_index(
        op.f("ix_harvest_runs_workspace_id_compute_id_started_at"), table_name="harvest_runs"
    )
    op.drop_table("harvest_runs")
    op.drop_index(op.f("ix_session_state_changes_observed_at"), table_name="session_state_changes")
    op.drop_index(
        op.f("ix_session_state_changes_session_id_observed_at"), table_name="session_state_changes"
    )
    op.drop_table("session_state_changes")
    op.drop_index(op.f("ix_livy_sessions_create_time"), table_name="livy_sessions")
    op.drop_index(
        op.f("ix_livy_sessions_workspace_id_compute_id_create_time"), table_name="livy_sessions"
    )
    op.drop_table("livy_sessions")
