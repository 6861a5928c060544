"""Drift-proof and incremental passes against a listing that changes while it is read."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime

import pytest
import simkit
from simkit import DEMO, REGION
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from harvester.db import store
from harvester.db.engine import create_engine
from harvester.db.tables import harvest_runs, harvest_targets, livy_sessions
from harvester.records import ComputeId, Gateway, WorkspaceId
from harvester.settings import Settings
from harvester.simulator import SimulatedService, serve
from harvester.sync import SyncResult, run_sync


def one_gateway(seed: int, sessions: int) -> tuple[SimulatedService, str, str]:
    service = SimulatedService(seed, quirks=False)
    workspace_id = service.add_workspace()
    compute_id = service.add_gateway(workspace_id)
    service.add_sessions(workspace_id, compute_id, sessions, spread_days=30)
    return service, workspace_id, compute_id


def running_only(
    service: SimulatedService, workspace_id: str, compute_id: str, positions: Sequence[int]
) -> list[str]:
    """Finish every session of the gateway but those at `positions` (0 = newest), which
    run; their ids."""
    ids = service.session_ids(workspace_id, compute_id)
    for session_id in ids:
        service.finish(session_id)
    running = [ids[position] for position in positions]
    for session_id in running:
        service.set_state(session_id, "running")
    return running


def settings_for(database_url: str, endpoint: str, page_size: int = 50) -> Settings:
    return simkit.settings_for(database_url, endpoint, HARVESTER_API__PAGE_SIZE=str(page_size))


async def sync(settings: Settings, *, full: bool = False) -> SyncResult:
    result = await run_sync(settings, credentials=DEMO, full=full)
    assert result.ok, [(r.status, r.error) for r in result.runs]
    return result


async def stored(engine: AsyncEngine) -> dict[str, datetime | None]:
    """session id -> gone_at"""
    async with engine.connect() as conn:
        rows = await conn.execute(select(livy_sessions.c.session_id, livy_sessions.c.gone_at))
        return {row.session_id: row.gone_at for row in rows}


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    yield engine
    await engine.dispose()


@pytest.mark.parametrize("seed", range(10))
async def test_a_drifting_listing_never_loses_a_session_listed_when_the_pass_began(
    seed: int, sqlite_url: str
) -> None:
    rng = random.Random(seed)
    service, workspace_id, compute_id = one_gateway(seed, rng.randrange(200, 700))
    engine = create_engine(sqlite_url)
    try:
        async with serve(service) as endpoint:
            settings = settings_for(sqlite_url, endpoint, page_size=rng.choice([20, 50, 100]))
            for full in (True, False, True):
                listing = service.session_ids(workspace_id, compute_id)
                at_start = set(listing)
                service.new_sessions_per_list_request = rng.randrange(0, 4)
                service.expire_per_list_request = expire = rng.randrange(0, 3)
                # The simulator drifts before serving each request: the oldest sessions
                # the first two requests (head, then tail) expire are never served.
                unreachable = set(listing[len(listing) - 2 * expire :]) if expire else set()
                await sync(settings, full=full)
                drift = (service.new_sessions_per_list_request, expire)
                service.new_sessions_per_list_request = service.expire_per_list_request = 0
                still_listed = at_start & set(service.session_ids(workspace_id, compute_id))
                rows = await stored(engine)
                assert still_listed - set(rows) == set()
                assert all(rows[i] is None for i in still_listed), "listed yet marked gone"
                # The tail is read right after the head: sessions forgotten during the
                # pass were stored too, as long as fewer than about a page of them went
                # (less what the head inserts pushed out of the tail pages meanwhile).
                margin = settings.api.page_size - 4 * drift[0]
                if len(at_start - still_listed) < margin:
                    missing = at_start - set(rows)
                    assert missing <= unreachable, (
                        full,
                        drift,
                        sorted(listing.index(i) for i in missing - unreachable),
                        len(listing),
                    )
            # Once the listing holds still, one full pass makes the store exact.
            result = await sync(settings, full=True)
            assert result.runs[0].complete is True
            listing = set(service.session_ids(workspace_id, compute_id))
            rows = await stored(engine)
            assert {i for i, gone in rows.items() if gone is None} == listing
            assert set(rows) >= listing  # forgotten sessions are kept, marked gone
    finally:
        await engine.dispose()


async def test_drift_is_recorded_on_the_run(sqlite_url: str) -> None:
    service, _, _ = one_gateway(3, 500)
    engine = create_engine(sqlite_url)
    try:
        async with serve(service) as endpoint:
            service.new_sessions_per_list_request = 2
            result = await sync(settings_for(sqlite_url, endpoint), full=True)
        run = result.runs[0]
        assert run.repeated_ids > 0
        assert run.total_count_changes > 0
        async with engine.connect() as conn:
            row = (await conn.execute(select(harvest_runs))).one()
        assert (row.repeated_ids, row.total_count_changes) == (
            run.repeated_ids,
            run.total_count_changes,
        )
        assert row.complete is True  # head inserts only repeat ids; nothing can be missed
    finally:
        await engine.dispose()


async def test_forgotten_sessions_are_marked_gone_and_cleared_when_they_return(
    database_url: str, engine: AsyncEngine
) -> None:
    service, workspace_id, compute_id = one_gateway(5, 300)
    async with serve(service) as endpoint:
        settings = settings_for(database_url, endpoint)
        await sync(settings)
        forgotten = service.expire_oldest(workspace_id, compute_id, 40)
        incremental = await sync(settings)
        assert incremental.runs[0].mode == "incremental"
        assert all(gone is None for gone in (await stored(engine)).values())  # full passes only
        full = await sync(settings, full=True)
        assert full.runs[0].sessions_gone == 40
        rows = await stored(engine)
        assert {i for i, gone in rows.items() if gone is not None} == set(forgotten)
        assert len(rows) == 300  # nothing deleted

        listed_id = service.session_ids(workspace_id, compute_id)[10]
        async with engine.begin() as conn:
            await conn.execute(
                update(livy_sessions)
                .where(livy_sessions.c.session_id == listed_id)
                .values(gone_at=datetime.now(UTC))
            )
        await sync(settings, full=True)
        assert (await stored(engine))[listed_id] is None


async def test_incremental_pass_reads_the_head_and_goes_straight_to_deep_open_sessions(
    database_url: str, engine: AsyncEngine
) -> None:
    service, workspace_id, compute_id = one_gateway(7, 3000)
    deep = running_only(service, workspace_id, compute_id, (1234, 2777))
    async with serve(service) as endpoint:
        settings = settings_for(database_url, endpoint, page_size=100)
        first = await sync(settings)
        assert first.runs[0].mode == "full"
        assert first.runs[0].requests == 31  # 30 pages, and the last one read early

        quiet = await sync(settings)
        assert quiet.runs[0].mode == "incremental"
        # One page per deep open session; the first one, found exactly where the store
        # placed it, shows that nothing was added at the head.
        assert quiet.runs[0].requests == 2
        assert quiet.runs[0].inserted + quiet.runs[0].updated == 0

        service.add_sessions(
            workspace_id, compute_id, 5, state="terminated", create_time_ms=service.now_ms
        )
        for session_id in deep:
            service.finish(session_id)
        changed = await sync(settings)
        run = changed.runs[0]
        assert (run.mode, run.inserted, run.updated) == ("incremental", 5, 2)
        # The first deep page shows 5 sessions were added: the head up to a page of only
        # finished, unchanged sessions (2 pages), then the other deep one.
        assert run.requests == 4
    async with engine.connect() as conn:
        states = dict(
            (
                await conn.execute(
                    select(livy_sessions.c.session_id, livy_sessions.c.state).where(
                        livy_sessions.c.session_id.in_(deep)
                    )
                )
            ).all()
        )
    assert set(states.values()) == {"terminated"}


async def test_an_incremental_pass_costs_one_request_per_page_holding_open_sessions(
    database_url: str, engine: AsyncEngine
) -> None:
    service, workspace_id, compute_id = one_gateway(8, 1000)
    moving = running_only(service, workspace_id, compute_id, (3, 60, 640))  # 2 on page 1
    async with serve(service) as endpoint:
        settings = settings_for(database_url, endpoint, page_size=100)
        await sync(settings)
        quiet = await sync(settings)
        assert (quiet.runs[0].mode, quiet.runs[0].requests) == ("incremental", 2)

        service.finish(moving[1])
        service.add_sessions(
            workspace_id, compute_id, 130, state="terminated", create_time_ms=service.now_ms
        )
        changed = await sync(settings)
        run = changed.runs[0]
        # Three pages of head: two with new sessions (the second also holds the two open
        # ones, pushed down by 130, one of them finished) and one without change; then the
        # deep one, found through its shifted position.
        assert (run.inserted, run.updated, run.requests) == (130, 1, 4)
    assert set(await stored(engine)) == set(service.session_ids(workspace_id, compute_id))


async def test_the_head_is_read_on_while_its_pages_show_change(
    database_url: str, engine: AsyncEngine
) -> None:
    service, workspace_id, compute_id = one_gateway(10, 1000)
    running_only(service, workspace_id, compute_id, ())
    late = service.session_ids(workspace_id, compute_id)[130]
    async with serve(service) as endpoint:
        settings = settings_for(database_url, endpoint, page_size=100)
        await sync(settings)
        assert (await sync(settings)).runs[0].requests == 1  # nothing open, nothing new

        # A finished session's cost is corrected, and 20 sessions are added in front.
        service.override_fields(late, cuHours=123.25)
        service.add_sessions(
            workspace_id, compute_id, 20, state="terminated", create_time_ms=service.now_ms
        )
        run = (await sync(settings)).runs[0]
        # Page 1 holds new sessions, page 2 (position 150) the changed one, page 3 only
        # finished, unchanged ones: there the head ends.
        assert (run.mode, run.inserted, run.updated, run.requests) == ("incremental", 20, 1, 3)
    async with engine.connect() as conn:
        cost = await conn.scalar(
            select(livy_sessions.c.cu_hours).where(livy_sessions.c.session_id == late)
        )
    assert float(cost) == 123.25


async def test_an_unordered_listing_gets_full_passes_and_ends_exact(
    database_url: str, engine: AsyncEngine
) -> None:
    service, workspace_id, compute_id = one_gateway(9, 400)
    service.unordered = True
    async with serve(service) as endpoint:
        settings = settings_for(database_url, endpoint)
        first = await sync(settings)
        assert first.runs[0].complete is True  # the listing held still
        second = await sync(settings)
        assert second.runs[0].mode == "full"
        service.add_sessions(workspace_id, compute_id, 7)
        await sync(settings)
    async with engine.connect() as conn:
        ordered = (await conn.execute(select(harvest_targets.c.listing_ordered))).scalar_one()
    assert ordered is False
    assert set(await stored(engine)) == set(service.session_ids(workspace_id, compute_id))


async def test_an_incremental_pass_that_finds_disorder_falls_back_to_a_full_pass(
    database_url: str, engine: AsyncEngine
) -> None:
    service, workspace_id, compute_id = one_gateway(4, 400)
    async with serve(service) as endpoint:
        settings = settings_for(database_url, endpoint)
        await sync(settings)
        service.unordered = True
        service.add_sessions(workspace_id, compute_id, 3)
        result = await sync(settings)
    run = result.runs[0]
    assert run.mode == "full"
    assert "not ordered" in " ".join(run.notes)
    assert set(await stored(engine)) == set(service.session_ids(workspace_id, compute_id))


async def test_open_sessions_and_their_positions_belong_to_their_own_gateway(
    database_url: str, engine: AsyncEngine
) -> None:
    service = SimulatedService(12, quirks=False)
    workspace_id = service.add_workspace()
    gateways = [service.add_gateway(workspace_id) for _ in range(3)]
    for compute_id in gateways:
        service.add_sessions(workspace_id, compute_id, 300, spread_days=30)
        service.add_sessions(workspace_id, compute_id, 5, state="running")
    async with serve(service) as endpoint:
        await sync(settings_for(database_url, endpoint))
    async with engine.connect() as conn:
        for compute_id in gateways:
            listing = service.session_ids(workspace_id, compute_id)
            gateway = Gateway(REGION, WorkspaceId(workspace_id), ComputeId(compute_id))
            found = await store.open_sessions(conn, gateway)
            expected = [
                i for i in listing if service.record(i)["state"] not in ("terminated", "error")
            ]
            assert [s.session_id for s in found] == expected
            # Positions agree with the listing up to ties in createTime.
            for session in found:
                assert listing[session.position] == session.session_id or (
                    service.record(listing[session.position])["createTime"]
                    == service.record(session.session_id)["createTime"]
                )
