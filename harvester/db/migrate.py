"""Alembic, driven from code: upgrade to head, check the schema is current.

Alembic is imported only to migrate: `sync` and `run` check the revision with one query
against `HEAD_REVISION` (a test keeps it equal to the newest migration).
"""

from __future__ import annotations

from importlib.resources import files
from typing import TYPE_CHECKING

from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

if TYPE_CHECKING:
    from alembic.config import Config

#: the newest revision shipped with this version of the harvester
HEAD_REVISION = "0006"


def alembic_config(database_url: str | None = None) -> Config:
    """An Alembic config pointing at the shipped migrations (no alembic.ini needed)."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(files("harvester.migrations")))
    config.set_main_option("file_template", "%%(year)d_%%(month).2d_%%(day).2d_%%(rev)s_%%(slug)s")
    if database_url is not None:
        config.attributes["database_url"] = database_url
    return config


def head_revision() -> str | None:
    """The newest revision among the shipped migration scripts (read by Alembic)."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()


async def upgrade(conn: AsyncConnection, revision: str = "head") -> None:
    """Bring the database behind `conn` to `revision`; the caller commits."""

    def _upgrade(sync_conn: Connection) -> None:
        from alembic import command

        config = alembic_config()
        config.attributes["connection"] = sync_conn
        command.upgrade(config, revision)

    await conn.run_sync(_upgrade)


async def downgrade(conn: AsyncConnection, revision: str) -> None:
    """Step the database behind `conn` down to `revision`; the caller commits."""

    def _downgrade(sync_conn: Connection) -> None:
        from alembic import command

        config = alembic_config()
        config.attributes["connection"] = sync_conn
        command.downgrade(config, revision)

    await conn.run_sync(_downgrade)


async def current_revision(conn: AsyncConnection) -> str | None:
    """The revision the database is at, None for an empty database."""

    def _has_version_table(sync_conn: Connection) -> bool:
        return bool(sync_conn.dialect.has_table(sync_conn, "alembic_version"))

    if not await conn.run_sync(_has_version_table):
        return None
    versions = (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalars()
    found = list(versions)
    return str(found[0]) if len(found) == 1 else None
