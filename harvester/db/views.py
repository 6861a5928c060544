"""Typed handles on the SQL views of revision 0003, so reads get Python values on both dialects.

The views themselves are created by the migration; these are only for SELECTs.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Float, Numeric, Text, column, table

from harvester.db.tables import UtcDateTime

target_health = table(
    "target_health",
    column("workspace_id", Text),
    column("compute_id", Text),
    column("region_id", Text),
    column("name", Text),
    column("origin", Text),
    column("active", Boolean),
    column("last_run_id", BigInteger),
    column("last_run_status", Text),
    column("last_run_started_at", UtcDateTime),
    column("last_run_finished_at", UtcDateTime),
    column("last_success_at", UtcDateTime),
    column("last_full_pass_at", UtcDateTime),
    column("lag_s", Float),
    column("last_error", Text),
    column("last_error_at", UtcDateTime),
    column("sessions_stored", BigInteger),
)

session_durations = table(
    "session_durations",
    column("session_id", Text),
    column("workspace_id", Text),
    column("compute_id", Text),
    column("region_id", Text),
    column("name", Text),
    column("state", Text),
    column("queue", Text),
    column("proxy_user", Text),
    column("create_time", UtcDateTime),
    column("end_time", UtcDateTime),
    column("gone_at", UtcDateTime),
    column("duration_s", Float),
    column("running", Boolean),
    column("cu_hours", Numeric),
    column("vcore_seconds", BigInteger),
    column("mb_seconds", BigInteger),
)

daily_usage = table(
    "daily_usage",
    column("day", Text),  # a date on PostgreSQL, 'YYYY-MM-DD' text on SQLite
    column("workspace_id", Text),
    column("compute_id", Text),
    column("queue", Text),
    column("proxy_user", Text),
    column("sessions", BigInteger),
    column("cu_hours", Numeric),
    column("vcore_seconds", Numeric),
    column("mb_seconds", Numeric),
)
