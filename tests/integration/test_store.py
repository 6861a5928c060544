"""The store on real databases: page upserts, change detection, state history, ledger."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from harvester.db import store
from harvester.db.tables import harvest_runs, harvest_targets, livy_sessions, session_state_changes
from harvester.records import ComputeId, Gateway, SessionId, SessionRecord, WorkspaceId

GATEWAY = Gateway("cn-hangzhou", WorkspaceId("w-1"), ComputeId("lc-1"))
T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def record(session_id: str, state: str = "running", **changes: object) -> SessionRecord:
    base = SessionRecord(
        session_id=SessionId(session_id),
        workspace_id=GATEWAY.workspace_id,
        compute_id=GATEWAY.compute_id,
        region_id=GATEWAY.region_id,
        name=f"job {session_id} 数据 🚀",
        state=state,
        spark_conf={"proxyUser": "alice", "spark.executor.cores": "2"},
        spark_conf_raw='{"proxyUser":"alice","spark.executor.cores":"2"}',
        proxy_user="alice",
        queue="root.default",
        info=None,
        web_ui="https://ui.example/1",
        create_time_ms=1_767_323_045_123,
        end_time_ms=None,
        cu_hours=1.25,
        vcore_seconds=3600,
        mb_seconds=9_000_000_000_000,
        raw={"sessionId": session_id, "state": state},
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


async def write(engine: AsyncEngine, run_id: int, records: list[SessionRecord], now: datetime
                ) -> store.PageCounts:  # fmt: skip
    async with engine.begin() as conn:
        return await store.store_page(
            conn, run_id=run_id, gateway=GATEWAY, records=records, requests=1, skipped=0,
            invalid_values=0, checkpoint={"page_num": 1}, now=now,
        )  # fmt: skip


async def open_run(engine: AsyncEngine) -> int:
    async with engine.begin() as conn:
        await store.register_targets(conn, [GATEWAY], origin="configured", seen_at=T0)
        return await store.start_run(conn, GATEWAY, "full", T0)


async def test_page_insert_then_unchanged_then_changed(engine: AsyncEngine) -> None:
    run_id = await open_run(engine)
    first = await write(engine, run_id, [record("s1"), record("s2")], T0)
    assert first == store.PageCounts(inserted=2, updated=0, unchanged=0, state_changes=2)

    again = await write(engine, run_id, [record("s1"), record("s2")], T0 + timedelta(minutes=1))
    assert again == store.PageCounts(inserted=0, updated=0, unchanged=2, state_changes=0)

    later = T0 + timedelta(minutes=2)
    finished = record("s1", "terminated", end_time_ms=1_767_326_645_000, cu_hours=2.5)
    changed = await write(engine, run_id, [finished, record("s2", cu_hours=1.5)], later)
    assert changed == store.PageCounts(inserted=0, updated=2, unchanged=0, state_changes=1)

    async with engine.connect() as conn:
        rows = {r.session_id: r for r in await conn.execute(select(livy_sessions))}
        history = (
            await conn.execute(select(session_state_changes).order_by(session_state_changes.c.id))
        ).all()
        run = (await conn.execute(select(harvest_runs))).one()
        target = (await conn.execute(select(harvest_targets))).one()
    s1 = rows["s1"]
    assert s1.state == "terminated"
    assert s1.end_time == datetime(2026, 1, 2, 4, 4, 5, tzinfo=UTC)
    assert s1.create_time == datetime(2026, 1, 2, 3, 4, 5, 123000, tzinfo=UTC)
    assert Decimal(str(s1.cu_hours)) == Decimal("2.5")
    assert s1.first_seen_at == T0
    assert s1.updated_at == later
    assert rows["s2"].updated_at == later
    assert rows["s2"].state == "running"
    assert s1.mb_seconds == 9_000_000_000_000
    assert s1.spark_conf == {"proxyUser": "alice", "spark.executor.cores": "2"}
    assert s1.raw == {"sessionId": "s1", "state": "terminated"}
    assert s1.name == "job s1 数据 🚀"
    changes = [(h.session_id, h.from_state, h.to_state) for h in history]
    # First sight of both (in either order within their page), then the change.
    assert sorted(changes[:2]) == [("s1", None, "running"), ("s2", None, "running")]
    assert changes[2:] == [("s1", "running", "terminated")]
    assert (run.pages, run.requests, run.sessions_seen) == (3, 3, 6)
    assert (run.sessions_inserted, run.sessions_updated, run.sessions_unchanged) == (2, 2, 2)
    assert target.checkpoint == {"page_num": 1}


async def test_unchanged_session_keeps_updated_at(engine: AsyncEngine) -> None:
    run_id = await open_run(engine)
    await write(engine, run_id, [record("s1")], T0)
    await write(engine, run_id, [record("s1")], T0 + timedelta(hours=1))
    async with engine.connect() as conn:
        row = (await conn.execute(select(livy_sessions))).one()
    assert row.updated_at == T0


async def test_null_fields_and_empty_page(engine: AsyncEngine) -> None:
    run_id = await open_run(engine)
    sparse = record("s1", name=None, spark_conf=None, spark_conf_raw=None, proxy_user=None,
                    create_time_ms=None, cu_hours=None, vcore_seconds=None, state=None)  # fmt: skip
    counts = await write(engine, run_id, [sparse], T0)
    assert counts.inserted == 1
    assert (await write(engine, run_id, [sparse], T0)).unchanged == 1
    assert await write(engine, run_id, [], T0) == store.PageCounts(0, 0, 0, 0)
    async with engine.connect() as conn:
        row = (await conn.execute(select(livy_sessions))).one()
    assert row.create_time is None
    assert row.spark_conf is None
    assert row.cu_hours is None


async def test_finish_run_marks_target(engine: AsyncEngine) -> None:
    run_id = await open_run(engine)
    async with engine.begin() as conn:
        await store.finish_run(conn, run_id, GATEWAY, status="succeeded", finished_at=T0,
                               mode="full", requests=2)  # fmt: skip
    async with engine.connect() as conn:
        run = (await conn.execute(select(harvest_runs))).one()
        target = (await conn.execute(select(harvest_targets))).one()
    assert run.status == "succeeded"
    assert run.requests == 2
    assert run.finished_at == T0
    assert target.last_success_at == T0
    assert target.last_full_pass_at == T0
    assert target.last_run_id == run_id
    assert target.checkpoint is None


async def test_page_for_missing_run_fails_whole(engine: AsyncEngine) -> None:
    with pytest.raises(LookupError):
        await write(engine, 999, [record("s1")], T0)
    async with engine.connect() as conn:
        assert (await conn.execute(select(livy_sessions))).all() == []


async def test_pages_commit_without_waiting_for_the_flush_and_a_run_closes_with_one(
    postgres_url: str,
) -> None:
    from harvester.db.engine import create_engine

    engine = create_engine(postgres_url)
    try:
        run_id = await open_run(engine)
        async with engine.begin() as conn:
            show = "SHOW synchronous_commit"
            assert (await conn.exec_driver_sql(show)).scalar_one() == "off"
            await store.finish_run(conn, run_id, GATEWAY, status="succeeded", finished_at=T0,
                                   mode="full")  # fmt: skip
            assert (await conn.exec_driver_sql(show)).scalar_one() == "on"
        async with engine.connect() as conn:
            assert (await conn.exec_driver_sql(show)).scalar_one() == "off"  # LOCAL to it
    finally:
        await engine.dispose()
