"""One writer per gateway, across processes: PostgreSQL session-level advisory locks.

The lock lives on a connection of its own, held for the whole run, so a crashed
process's lock frees itself when its connection drops. SQLite has no such lock: a
single harvester process per SQLite file is the documented limit.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from harvester.records import Gateway

# hashtextextended gives a stable 64-bit key from the gateway's identity; the prefix
# keeps the key space apart from other applications sharing the database.
_TRY_LOCK = text("SELECT pg_try_advisory_lock(hashtextextended(:key, 0))")
_UNLOCK = text("SELECT pg_advisory_unlock(hashtextextended(:key, 0))")


def lock_key(gateway: Gateway) -> str:
    """The text the advisory lock of a gateway is derived from."""
    return f"harvester:{gateway.workspace_id}/{gateway.compute_id}"


@dataclass(frozen=True, slots=True)
class GatewayLock:
    """Whether this process holds a gateway's lock, and on PostgreSQL the connection
    holding it.

    That connection is in autocommit mode and a run writes its pages on it, one
    statement each (atomic on its own): pages are only ever written while the lock is
    held, and with no BEGIN, COMMIT or pool checkout per page.
    """

    held: bool
    conn: AsyncConnection | None = None

    def __bool__(self) -> bool:
        return self.held


@asynccontextmanager
async def gateway_lock(engine: AsyncEngine, gateway: Gateway) -> AsyncIterator[GatewayLock]:
    """Try to take the gateway's lock; yield whether this process holds it."""
    if engine.dialect.name != "postgresql":
        yield GatewayLock(held=True)
        return
    key = lock_key(gateway)
    async with engine.connect() as conn:
        conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
        held = bool((await conn.execute(_TRY_LOCK, {"key": key})).scalar_one())
        try:
            yield GatewayLock(held, conn if held else None)
        finally:
            if held:
                await _unlock(conn, key)


async def _unlock(conn: AsyncConnection, key: str) -> None:
    try:
        await conn.execute(_UNLOCK, {"key": key})
    except (SQLAlchemyError, OSError):
        # Dropping the connection frees the lock just as well.
        await conn.invalidate()
