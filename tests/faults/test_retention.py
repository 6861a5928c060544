"""Retention: the store keeps what the service forgets; nothing is ever deleted."""

from __future__ import annotations

from faultkit import assert_ledger_consistent, make_service, settings_for
from simkit import DEMO, REGION
from sqlalchemy import func, select

from harvester.db.engine import create_engine
from harvester.db.tables import livy_sessions
from harvester.simulator import serve
from harvester.sync import run_sync


async def test_sessions_the_service_forgets_stay_in_the_store(database_url: str) -> None:
    service = make_service(seed=61, sessions_per_gateway=30)
    workspace_id = service.workspace_ids(REGION)[0]
    compute_id = service.gateway_ids(workspace_id)[0]
    async with serve(service) as endpoint:
        settings = settings_for(database_url, endpoint)
        assert (await run_sync(settings, credentials=DEMO)).ok
        forgotten = service.expire_oldest(workspace_id, compute_id, 10)
        assert (await run_sync(settings, credentials=DEMO)).ok
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            total = (await conn.execute(select(func.count()).select_from(livy_sessions))).scalar()
            kept = (
                await conn.execute(
                    select(func.count())
                    .select_from(livy_sessions)
                    .where(livy_sessions.c.session_id.in_(forgotten))
                )
            ).scalar()
    finally:
        await engine.dispose()
    assert kept == 10
    assert total == 4 * 30
    await assert_ledger_consistent(database_url)
