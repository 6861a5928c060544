"""Alembic, driven from code: upgrade to head, check the schema is current."""

from __future__ import annotations

from importlib.resources import files

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection


def alembic_config(database_url: str | None = None) -> Config:
    """An Alembic config pointing at the shipped migrations (no alembic.ini needed)."""
    config = Config()
    config.set_main_option("script_location", str(files("harvester.migrations")))
    config.set_main_option("file_template", "%%(year)d_%%(month).2d_%%(day).2d_%%(rev)s_%%(slug)s")
    if database_url is not None:
        config.attributes["database_url"] = database_url
    return config


def head_revision() -> str | None:
    """The newest revision shipped with this version of the harvester."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


async def upgrade(conn: AsyncConnection, revision: str = "head") -> None:
    """Bring the database behind `conn` to `revision`; the caller commits."""

    def _upgrade(sync_conn: Connection) -> None:
        config = alembic_config()
        config.attributes["connection"] = sync_conn
        command.upgrade(config, revision)

    await conn.run_sync(_upgrade)


async def downgrade(conn: AsyncConnection, revision: str) -> None:
    """Step the database behind `conn` down to `revision`; the caller commits."""

    def _downgrade(sync_conn: Connection) -> None:
        config = alembic_config()
        config.attributes["connection"] = sync_conn
        command.downgrade(config, revision)

    await conn.run_sync(_downgrade)


async def current_revision(conn: AsyncConnection) -> str | None:
    """The revision the database is at, None for an empty database."""

    def _current(sync_conn: Connection) -> str | None:
        return MigrationContext.configure(sync_conn).get_current_revision()

    return await conn.run_sync(_current)
