"""Table metadata: the SQL contract of DESIGN §4, for PostgreSQL and SQLite alike.

Alembic migrations create these tables; `alembic check` in the tests proves the two agree.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    Index,
    Integer,
    MetaData,
    Numeric,
    Table,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UtcDateTime(TypeDecorator[datetime]):
    """timestamptz on PostgreSQL; UTC text on SQLite. Always aware UTC in Python."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given where an aware UTC datetime is required")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


#: JSON documents: jsonb on PostgreSQL (queryable, compared semantically), text on SQLite.
Document = JSON().with_variant(JSONB(), "postgresql")
#: Auto-incrementing ids: bigint identity on PostgreSQL, rowid alias on SQLite.
Id = BigInteger().with_variant(Integer(), "sqlite")


#: a session that may still change: any state but the terminal ones (records.TERMINAL_STATES)
OPEN_SESSION = text("(state IS NULL OR state NOT IN ('error', 'terminated'))")

livy_sessions = Table(
    "livy_sessions",
    metadata,
    Column("session_id", Text, primary_key=True),
    Column("workspace_id", Text, nullable=False),
    Column("compute_id", Text, nullable=False),
    Column("region_id", Text),
    Column("name", Text),
    Column("state", Text),
    Column("spark_conf", Document),
    Column("spark_conf_raw", Text),
    Column("proxy_user", Text),
    Column("queue", Text),
    Column("info", Text),
    Column("web_ui", Text),
    Column("create_time", UtcDateTime),
    Column("end_time", UtcDateTime),
    Column("cu_hours", Numeric),
    Column("vcore_seconds", BigInteger),
    Column("mb_seconds", BigInteger),
    Column("raw", Document, nullable=False),
    Column("first_seen_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("gone_at", UtcDateTime),
    Index(None, "workspace_id", "compute_id", "create_time"),
    Index(None, "create_time"),
    # Revision 0003: the common filters of the usage views and reports.
    Index(None, "state", "create_time"),
    Index(None, "queue", "create_time"),
    Index(None, "proxy_user", "create_time"),
    # Sessions that may still change: what an incremental pass looks for (small, partial).
    Index(
        "ix_livy_sessions_open",
        "workspace_id",
        "compute_id",
        "create_time",
        postgresql_where=OPEN_SESSION,
        sqlite_where=OPEN_SESSION,
    ),
    Index(
        None,
        "gone_at",
        postgresql_where=text("gone_at IS NOT NULL"),
        sqlite_where=text("gone_at IS NOT NULL"),
    ),
)

session_state_changes = Table(
    "session_state_changes",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    # No foreign key (revision 0005): the page statement writes a session and its state
    # change together and sessions are never deleted; the key's per-row check cost more
    # than the rest of the state change.
    Column("session_id", Text, nullable=False),
    Column("from_state", Text),
    Column("to_state", Text),
    Column("observed_at", UtcDateTime, nullable=False),
    Index(None, "session_id", "observed_at"),
    Index(None, "observed_at"),
)

harvest_runs = Table(
    "harvest_runs",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("workspace_id", Text, nullable=False),
    Column("compute_id", Text, nullable=False),
    Column("region_id", Text),
    Column("started_at", UtcDateTime, nullable=False),
    Column("finished_at", UtcDateTime),
    Column("status", Text, nullable=False),
    Column("mode", Text, nullable=False),
    Column("requests", Integer, nullable=False, server_default=text("0")),
    Column("pages", Integer, nullable=False, server_default=text("0")),
    Column("sessions_seen", Integer, nullable=False, server_default=text("0")),
    Column("sessions_inserted", Integer, nullable=False, server_default=text("0")),
    Column("sessions_updated", Integer, nullable=False, server_default=text("0")),
    Column("sessions_unchanged", Integer, nullable=False, server_default=text("0")),
    Column("sessions_skipped", Integer, nullable=False, server_default=text("0")),
    Column("invalid_values", Integer, nullable=False, server_default=text("0")),
    Column("error", Text),
    # Drift seen while paging, and what the pass could prove (see harvester.passes).
    Column("total_count_changes", Integer, nullable=False, server_default=text("0")),
    Column("repeated_ids", Integer, nullable=False, server_default=text("0")),
    Column("rereads", Integer, nullable=False, server_default=text("0")),
    Column("sessions_gone", Integer, nullable=False, server_default=text("0")),
    Column("complete", Boolean),
    Column("notes", Text),
    Index(None, "workspace_id", "compute_id", "started_at"),
    Index(None, "status"),
    # Revision 0003: target_health's "last failed run" per target.
    Index(None, "workspace_id", "compute_id", "status", "started_at"),
)

harvest_targets = Table(
    "harvest_targets",
    metadata,
    Column("workspace_id", Text, primary_key=True),
    Column("compute_id", Text, primary_key=True),
    Column("region_id", Text, nullable=False),
    Column("name", Text),
    Column("origin", Text, nullable=False),
    Column("active", Boolean, nullable=False, server_default=text("true")),
    Column("first_seen_at", UtcDateTime, nullable=False),
    Column("last_seen_at", UtcDateTime, nullable=False),
    Column("last_run_id", BigInteger),
    Column("last_success_at", UtcDateTime),
    Column("last_full_pass_at", UtcDateTime),
    Column("checkpoint", Document),
    Column("listing_ordered", Boolean),
)
