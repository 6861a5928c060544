"""Migrations: one head, no drift from the table metadata, down and up again with data."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, select, text
from sqlalchemy.engine import Connection

from harvester.db import migrate
from harvester.db.engine import create_engine
from harvester.db.tables import livy_sessions, metadata


def test_single_head() -> None:
    script = ScriptDirectory.from_config(migrate.alembic_config())
    assert len(script.get_heads()) == 1
    assert script.get_current_head() == migrate.HEAD_REVISION, "update migrate.HEAD_REVISION"


async def test_upgrade_matches_metadata_then_down_and_up(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        # The fixtures hand over a database already at head.
        async with engine.connect() as conn:
            assert await migrate.current_revision(conn) == migrate.head_revision()

            def drift(sync_conn: Connection) -> list[object]:
                context = MigrationContext.configure(sync_conn, opts={"compare_type": True})
                return list(compare_metadata(context, metadata))

            assert await conn.run_sync(drift) == []

        async with engine.begin() as conn:
            await conn.execute(
                livy_sessions.insert().values(
                    session_id="s1",
                    workspace_id="w",
                    compute_id="c",
                    raw={},
                    first_seen_at=text("CURRENT_TIMESTAMP"),
                    updated_at=text("CURRENT_TIMESTAMP"),
                )
            )
        async with engine.begin() as conn:
            await migrate.downgrade(conn, "base")
        async with engine.connect() as conn:
            tables = await conn.run_sync(lambda c: inspect(c).get_table_names())
            assert set(tables) <= {"alembic_version"}
        async with engine.begin() as conn:
            await migrate.upgrade(conn)
            await conn.execute(
                livy_sessions.insert().values(
                    session_id="s2",
                    workspace_id="w",
                    compute_id="c",
                    raw={"a": 1},
                    first_seen_at=text("CURRENT_TIMESTAMP"),
                    updated_at=text("CURRENT_TIMESTAMP"),
                )
            )
        async with engine.connect() as conn:
            ids = (await conn.execute(select(livy_sessions.c.session_id))).scalars().all()
            assert ids == ["s2"]
    finally:
        await engine.dispose()


CONTRACT_TYPES = {
    "session_id": "text", "workspace_id": "text", "compute_id": "text", "region_id": "text",
    "name": "text", "state": "text", "spark_conf": "jsonb", "spark_conf_raw": "text",
    "proxy_user": "text", "queue": "text", "info": "text", "web_ui": "text",
    "create_time": "timestamp with time zone", "end_time": "timestamp with time zone",
    "cu_hours": "numeric", "vcore_seconds": "bigint", "mb_seconds": "bigint", "raw": "jsonb",
    "first_seen_at": "timestamp with time zone", "updated_at": "timestamp with time zone",
    "gone_at": "timestamp with time zone",
}  # fmt: skip


async def test_postgres_types_are_the_sql_contract(postgres_url: str) -> None:
    engine = create_engine(postgres_url)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(
                text(
                    "SELECT column_name, data_type FROM information_schema.columns "
                    "WHERE table_name = 'livy_sessions'"
                )
            )
            assert dict(rows.all()) == CONTRACT_TYPES
    finally:
        await engine.dispose()


async def test_the_page_row_type_has_the_fields_a_page_is_sent_with(postgres_url: str) -> None:
    from harvester.db import store

    engine = create_engine(postgres_url)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(
                text(
                    "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a"
                    " JOIN pg_type t ON t.typrelid = a.attrelid"
                    " WHERE t.typname = :name AND a.attnum > 0 ORDER BY a.attnum"
                ),
                {"name": store.PAGE_ROW_TYPE},
            )
            assert [tuple(row) for row in rows] == list(store._RECORD_FIELDS)
    finally:
        await engine.dispose()
