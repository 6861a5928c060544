"""Database faults: connections killed mid-run and the database unreachable for a while.

No partial page (run counters and rows agree, each session seen first exactly once), no
corrupt checkpoint, the run fails cleanly or recovers, and the next sync completes exactly.
PostgreSQL only; the server is shared, so only this test's own database is touched.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from faultkit import (
    TcpProxy,
    assert_ledger_consistent,
    assert_store_exact,
    make_service,
    settings_for,
    terminate_backends,
)
from simkit import DEMO
from sqlalchemy.engine import make_url

from harvester.errors import StoreError
from harvester.simulator import serve
from harvester.sync import run_sync


def after_pages(count: int, action: Any) -> Any:
    """An on_page callback that starts `action` (a coroutine function) once, at page `count`."""
    pages = 0
    tasks: list[asyncio.Task[Any]] = []

    def on_page(_: object) -> None:
        nonlocal pages
        pages += 1
        if pages == count:
            tasks.append(asyncio.get_running_loop().create_task(action()))

    on_page.tasks = tasks  # type: ignore[attr-defined]
    return on_page


async def test_connections_killed_mid_run_then_the_next_sync_is_exact(postgres_url: str) -> None:
    service = make_service(seed=21, sessions_per_gateway=80)
    service.faults.delay_s = 0.02  # spread the run out so the kill lands mid-run
    killed: list[int] = []

    async def kill() -> None:
        killed.append(await terminate_backends(postgres_url))

    async with serve(service) as endpoint:
        settings = settings_for(postgres_url, endpoint, HARVESTER_API__PAGE_SIZE="10")
        on_page = after_pages(6, kill)
        first = await run_sync(settings, credentials=DEMO, on_page=on_page)
        await asyncio.gather(*on_page.tasks)
        assert killed
        assert killed[0] >= 1  # the harvester's connections were there to kill
        statuses = {r.status for r in first.runs}
        assert statuses <= {"succeeded", "failed"}
        for run in first.runs:
            if run.status == "failed":
                assert run.error
                assert "database error" in run.error
        await assert_ledger_consistent(postgres_url, first_pass=True)

        service.faults.delay_s = 0.0
        second = await run_sync(settings, credentials=DEMO)
    assert second.ok, [r.error for r in second.runs] + second.errors
    await assert_store_exact(service, postgres_url)
    await assert_ledger_consistent(postgres_url)


async def test_database_unreachable_for_a_while_then_the_next_sync_is_exact(
    postgres_url: str,
) -> None:
    url = make_url(postgres_url)
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
    await proxy.start()
    service = make_service(seed=22, sessions_per_gateway=80)
    service.faults.delay_s = 0.02
    outage_s = 1.5

    async def outage() -> None:
        await proxy.stop()
        await asyncio.sleep(outage_s)
        await proxy.start()

    try:
        async with serve(service) as endpoint:
            settings = settings_for(
                proxy.url_for(postgres_url), endpoint, HARVESTER_API__PAGE_SIZE="10"
            )
            on_page = after_pages(5, outage)
            first = await run_sync(settings, credentials=DEMO, on_page=on_page)
            await asyncio.gather(*on_page.tasks)
            assert {r.status for r in first.runs} <= {"succeeded", "failed"}
            assert any(r.status == "failed" for r in first.runs)
            for run in first.runs:
                if run.status == "failed":  # a database error, or a refused (re)connect
                    assert run.error
                    assert "database error" in run.error or "Connect" in run.error

            service.faults.delay_s = 0.0
            second = await run_sync(settings, credentials=DEMO)
        assert second.ok, [r.error for r in second.runs] + second.errors
    finally:
        await proxy.close()
    await assert_store_exact(service, postgres_url)
    # Runs whose end could not be written during the outage were closed by the next sync.
    await assert_ledger_consistent(postgres_url)


async def test_database_down_at_start_fails_the_sync_cleanly(postgres_url: str) -> None:
    url = make_url(postgres_url)
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
    await proxy.start()
    await proxy.stop()
    service = make_service(seed=23, sessions_per_gateway=10)
    try:
        async with serve(service) as endpoint:
            settings = settings_for(proxy.url_for(postgres_url), endpoint)
            with pytest.raises(StoreError, match="cannot reach the database"):
                await run_sync(settings, credentials=DEMO)
    finally:
        await proxy.close()
