"""Usage views (daily_usage, session_durations, target_health) and the indexes behind them.

Touches only views and indexes, so it can sit on top of any table migration.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: name -> (table, columns); frozen here, mirrored in harvester/db/tables.py
INDEXES: dict[str, tuple[str, list[str]]] = {
    "ix_livy_sessions_state_create_time": ("livy_sessions", ["state", "create_time"]),
    "ix_livy_sessions_queue_create_time": ("livy_sessions", ["queue", "create_time"]),
    "ix_livy_sessions_proxy_user_create_time": ("livy_sessions", ["proxy_user", "create_time"]),
    "ix_harvest_runs_workspace_id_compute_id_status_started_at": (
        "harvest_runs",
        ["workspace_id", "compute_id", "status", "started_at"],
    ),
}

# Dialect-specific pieces: the UTC day of a timestamp, seconds between two, and "now".
_PG = {
    "day": "CAST(create_time AT TIME ZONE 'UTC' AS date)",
    "seconds": "EXTRACT(EPOCH FROM ({end} - {start}))",
    "now": "now()",
}
_SQLITE = {
    "day": "date(create_time)",
    "seconds": "((julianday({end}) - julianday({start})) * 86400.0)",
    "now": "strftime('%Y-%m-%d %H:%M:%f', 'now')",
}

#: states after which a session no longer runs (DESIGN §3); unknown states count as open
TERMINAL_STATES = "('terminated', 'error')"


def _views(sql: dict[str, str]) -> dict[str, str]:
    """The view bodies for one dialect, assembled from the fixed pieces above."""

    def seconds(end: str, start: str) -> str:
        return sql["seconds"].format(end=end, start=start)

    still_open = (
        f"(end_time IS NULL AND gone_at IS NULL"
        f" AND (state IS NULL OR state NOT IN {TERMINAL_STATES}))"
    )
    # Until it ends: up to now while still listed, up to gone_at once the service forgot it.
    until = (
        f"CASE WHEN end_time IS NOT NULL THEN end_time"
        f" WHEN state IN {TERMINAL_STATES} THEN NULL"
        f" WHEN gone_at IS NOT NULL THEN gone_at"
        f" ELSE {sql['now']} END"
    )
    return {
        "daily_usage": f"""
            SELECT {sql["day"]} AS day, workspace_id, compute_id, queue, proxy_user,
                   count(*) AS sessions, sum(cu_hours) AS cu_hours,
                   sum(vcore_seconds) AS vcore_seconds, sum(mb_seconds) AS mb_seconds
            FROM livy_sessions
            GROUP BY {sql["day"]}, workspace_id, compute_id, queue, proxy_user
        """,  # noqa: S608 (fixed text, no input)
        "session_durations": f"""
            SELECT session_id, workspace_id, compute_id, region_id, name, state, queue,
                   proxy_user, create_time, end_time, gone_at,
                   {seconds(until, "create_time")} AS duration_s,
                   {still_open} AS running,
                   cu_hours, vcore_seconds, mb_seconds
            FROM livy_sessions
        """,  # noqa: S608 (fixed text, no input)
        "target_health": f"""
            SELECT t.workspace_id, t.compute_id, t.region_id, t.name, t.origin, t.active,
                   r.id AS last_run_id, r.status AS last_run_status,
                   r.started_at AS last_run_started_at, r.finished_at AS last_run_finished_at,
                   t.last_success_at, t.last_full_pass_at,
                   {seconds(sql["now"], "t.last_success_at")} AS lag_s,
                   f.error AS last_error, f.started_at AS last_error_at,
                   (SELECT count(*) FROM livy_sessions AS s
                    WHERE s.workspace_id = t.workspace_id AND s.compute_id = t.compute_id
                   ) AS sessions_stored
            FROM harvest_targets AS t
            LEFT JOIN harvest_runs AS r ON r.id = (
                SELECT x.id FROM harvest_runs AS x
                WHERE x.workspace_id = t.workspace_id AND x.compute_id = t.compute_id
                ORDER BY x.started_at DESC, x.id DESC LIMIT 1)
            LEFT JOIN harvest_runs AS f ON f.id = (
                SELECT x.id FROM harvest_runs AS x
                WHERE x.workspace_id = t.workspace_id AND x.compute_id = t.compute_id
                  AND x.status = 'failed'
                ORDER BY x.started_at DESC, x.id DESC LIMIT 1)
        """,  # noqa: S608 (fixed text, no input)
    }


def upgrade() -> None:
    for name, (table, columns) in INDEXES.items():
        op.create_index(name, table, columns)
    # Partial: only forgotten sessions are indexed, so the harvest's inserts skip it.
    forgotten = sa.text("gone_at IS NOT NULL")
    op.create_index(
        "ix_livy_sessions_gone_at",
        "livy_sessions",
        ["gone_at"],
        postgresql_where=forgotten,
        sqlite_where=forgotten,
    )
    sql = _PG if op.get_bind().dialect.name == "postgresql" else _SQLITE
    for name, body in _views(sql).items():
        op.execute(f"CREATE VIEW {name} AS {body}")


def downgrade() -> None:
    for name in reversed(list(_views(_SQLITE))):
        op.execute(f"DROP VIEW IF EXISTS {name}")
    op.drop_index("ix_livy_sessions_gone_at", table_name="livy_sessions")
    for name, (table, _columns) in reversed(list(INDEXES.items())):
        op.drop_index(name, table_name=table)
