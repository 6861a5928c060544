"""One writer per gateway: advisory locks and the cleanup of runs left open."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from harvester.db import locks, store
from harvester.db.engine import create_engine
from harvester.db.tables import harvest_runs
from harvester.harvest import utc_now
from harvester.records import Gateway
from harvester.sync import close_abandoned_runs

GATEWAY = Gateway("cn-hangzhou", "w-1", "lc-1")


async def _open_run(engine: AsyncEngine, gateway: Gateway) -> int:
    async with engine.begin() as conn:
        await store.register_targets(conn, [gateway], origin="configured", seen_at=utc_now())
        return await store.start_run(conn, gateway, "full", utc_now())


async def _status(engine: AsyncEngine, run_id: int) -> str:
    async with engine.connect() as conn:
        query = select(harvest_runs.c.status).where(harvest_runs.c.id == run_id)
        return str((await conn.execute(query)).scalar_one())


async def test_a_held_lock_is_not_granted_to_another_process(postgres_url: str) -> None:
    first, second = create_engine(postgres_url), create_engine(postgres_url)
    try:
        async with locks.gateway_lock(first, GATEWAY) as held:
            assert held
            async with locks.gateway_lock(second, GATEWAY) as other:
                assert not other
            other_gateway = Gateway("cn-hangzhou", "w-1", "lc-2")
            async with locks.gateway_lock(second, other_gateway) as other:
                assert other
        async with locks.gateway_lock(second, GATEWAY) as held_after_release:
            assert held_after_release
    finally:
        await first.dispose()
        await second.dispose()


async def test_open_runs_are_closed_only_when_nobody_holds_the_lock(postgres_url: str) -> None:
    engine, alive = create_engine(postgres_url), create_engine(postgres_url)
    try:
        run_id = await _open_run(engine, GATEWAY)
        async with locks.gateway_lock(alive, GATEWAY):
            assert await close_abandoned_runs(engine) == 0
            assert await _status(engine, run_id) == "running"
        assert await close_abandoned_runs(engine) == 1
        assert await _status(engine, run_id) == "failed"
    finally:
        await engine.dispose()
        await alive.dispose()


async def test_open_runs_are_closed_on_sqlite(sqlite_url: str) -> None:
    engine = create_engine(sqlite_url)
    try:
        run_id = await _open_run(engine, GATEWAY)
        assert await close_abandoned_runs(engine) == 1
        assert await _status(engine, run_id) == "failed"
    finally:
        await engine.dispose()
