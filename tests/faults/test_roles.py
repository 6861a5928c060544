"""sql/roles.sql on a real PostgreSQL: the reader can only read (views added later too),
the writer can run a real sync but not change the schema. Role names are cluster-wide,
so the test uses unique ones and drops them afterwards."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import asyncpg
import pytest
from faultkit import assert_store_exact, make_service, postgres_dsn, settings_for
from simkit import DEMO
from sqlalchemy.engine import make_url

from harvester.simulator import serve
from harvester.sync import run_sync

ROLES_SQL = Path(__file__).parents[2] / "sql" / "roles.sql"


def apply_roles(dsn: str, **variables: str) -> subprocess.CompletedProcess[str]:
    args = ["psql", "-X", "-q", "-d", dsn, "-f", str(ROLES_SQL)]
    for name, value in variables.items():
        args += ["-v", f"{name}={value}"]
    return subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)


async def admin(dsn: str, *statements: str) -> None:
    conn = await asyncpg.connect(dsn, timeout=5)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


async def test_reader_reads_only_and_writer_harvests_without_ddl(postgres_url: str) -> None:
    suffix = uuid.uuid4().hex[:8]
    reader, writer = f"hv_reader_{suffix}", f"hv_writer_{suffix}"
    alice, bot = f"hv_alice_{suffix}", f"hv_bot_{suffix}"
    dsn = postgres_dsn(postgres_url)
    try:
        for _ in range(2):  # idempotent
            done = apply_roles(dsn, reader_role=reader, writer_role=writer)
            assert done.returncode == 0, done.stderr
        await admin(
            dsn,
            f'CREATE ROLE "{alice}" LOGIN IN ROLE "{reader}"',
            f'CREATE ROLE "{bot}" LOGIN IN ROLE "{writer}"',
            # A view a later migration adds (as the owner): the reader sees it too.
            "CREATE VIEW later_view AS SELECT session_id, state FROM livy_sessions",
        )
        as_alice = make_url(postgres_url).set(username=alice)
        as_bot = make_url(postgres_url).set(username=bot)

        service = make_service(seed=51, sessions_per_gateway=20)
        async with serve(service) as endpoint:
            url = as_bot.render_as_string(hide_password=False)
            result = await run_sync(settings_for(url, endpoint), credentials=DEMO)
        assert result.ok, [r.error for r in result.runs] + result.errors
        await assert_store_exact(service, postgres_url)

        conn = await asyncpg.connect(postgres_dsn(str(as_alice)), timeout=5)
        try:
            for table in ("livy_sessions", "session_state_changes", "harvest_runs",
                          "harvest_targets", "later_view"):  # fmt: skip
                assert await conn.fetchval(f"SELECT count(*) FROM {table}") > 0  # noqa: S608
            for statement in (
                "INSERT INTO harvest_runs (workspace_id, compute_id, started_at, status, mode)"
                " VALUES ('w', 'c', now(), 'running', 'full')",
                "UPDATE livy_sessions SET state = 'x'",
                "DELETE FROM livy_sessions",
                "TRUNCATE livy_sessions",
                "CREATE TABLE mine (id int)",
                "DROP VIEW later_view",
                "ALTER TABLE livy_sessions ADD COLUMN x int",
            ):
                with pytest.raises(asyncpg.InsufficientPrivilegeError):
                    await conn.execute(statement)
        finally:
            await conn.close()

        conn = await asyncpg.connect(postgres_dsn(str(as_bot)), timeout=5)
        try:
            for statement in (
                "DELETE FROM livy_sessions",
                "CREATE TABLE mine (id int)",
                "DROP TABLE harvest_runs",
                "ALTER TABLE livy_sessions ADD COLUMN x int",
            ):
                with pytest.raises(asyncpg.InsufficientPrivilegeError):
                    await conn.execute(statement)
        finally:
            await conn.close()
    finally:
        for role in (alice, bot, reader, writer):  # privileges live in this database only
            if await role_exists(dsn, role):
                await admin(dsn, f'DROP OWNED BY "{role}"', f'DROP ROLE "{role}"')
        assert not [r for r in (alice, bot, reader, writer) if await role_exists(dsn, r)]


async def role_exists(dsn: str, role: str) -> bool:
    conn = await asyncpg.connect(dsn, timeout=5)
    try:
        return bool(await conn.fetchval("SELECT count(*) FROM pg_roles WHERE rolname = $1", role))
    finally:
        await conn.close()
