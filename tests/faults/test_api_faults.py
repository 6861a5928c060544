"""API faults: with about a quarter of requests failing in every way the issue lists, a
sync still stores exactly what the API lists; a target that never recovers fails alone,
with its last error, within the retry budget."""

from __future__ import annotations

import asyncio
import json
import sys
import time

from faultkit import (
    API_FAULTS,
    assert_ledger_consistent,
    assert_store_exact,
    cli_env,
    make_service,
    settings_for,
)
from simkit import DEMO, REGION
from sqlalchemy import select

from harvester.db.engine import create_engine
from harvester.db.tables import harvest_runs
from harvester.simulator import serve
from harvester.sync import run_sync

#: per kind; 13 kinds make a quarter of all requests
FAULT_RATE = 0.25 / len(API_FAULTS)


async def stored_requests(database_url: str) -> dict[int, int]:
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(select(harvest_runs.c.id, harvest_runs.c.requests))
            return {row.id: row.requests for row in rows}
    finally:
        await engine.dispose()


async def test_fault_mix_sync_stores_exactly_what_the_api_lists(database_url: str) -> None:
    service = make_service(seed=5, sessions_per_gateway=50)
    for kind in API_FAULTS:
        service.faults.set_rate(kind, FAULT_RATE)  # type: ignore[arg-type]
    async with serve(service) as endpoint:
        settings = settings_for(database_url, endpoint, HARVESTER_API__PAGE_SIZE="5")
        # Besides the dice, force each kind once, one per stored page: every kind is met,
        # and never so many in a row that they only test the retry budget.
        unforced = list(API_FAULTS)

        def force_one(_: object) -> None:
            if unforced:
                service.faults.force(unforced.pop())  # type: ignore[arg-type]

        result = await run_sync(settings, credentials=DEMO, on_page=force_one)
        assert result.ok, [r.error for r in result.runs] + result.errors
        # Every request is on its run's row, also those made while a page was written.
        assert await stored_requests(database_url) == {r.run_id: r.requests for r in result.runs}
        # A second pass through the same storm changes nothing and still succeeds.
        again = await run_sync(settings, credentials=DEMO)
    assert again.ok, [r.error for r in again.runs] + again.errors
    assert sum(r.inserted + r.updated for r in again.runs) == 0
    faults, requests = service.stats.faults, service.stats.requests
    assert set(faults) == set(API_FAULTS)
    assert sum(faults.values()) >= 0.15 * requests, (faults, requests)
    await assert_store_exact(service, database_url)
    await assert_ledger_consistent(database_url)


async def test_permanently_failing_target_fails_alone_within_the_budget(
    postgres_url: str,
) -> None:
    service = make_service(seed=6)
    workspace_id = service.workspace_ids(REGION)[0]
    broken = service.gateway_ids(workspace_id)[0]
    service.broken_gateways.add(broken)
    env = {"HARVESTER_API__MAX_ATTEMPTS": "4", "HARVESTER_API__RETRY_BUDGET": "3"}
    async with serve(service) as endpoint:
        started = time.monotonic()
        result = await run_sync(settings_for(postgres_url, endpoint, **env), credentials=DEMO)
        elapsed_s = time.monotonic() - started
    assert not result.ok
    by_gateway = {r.gateway.compute_id: r for r in result.runs}
    failed = by_gateway.pop(broken)
    assert failed.status == "failed"
    assert "HTTP 503 ServiceUnavailable" in (failed.error or "")
    assert 1 < failed.requests <= 4  # retried, but no more than max_attempts
    assert failed.duration_s < 3 + 1.5  # the budget, plus at most one attempt's wait
    assert elapsed_s < 15
    assert all(r.status == "succeeded" for r in by_gateway.values())
    engine = create_engine(postgres_url)
    try:
        async with engine.connect() as conn:
            row = (
                await conn.execute(select(harvest_runs).where(harvest_runs.c.compute_id == broken))
            ).one()
    finally:
        await engine.dispose()
    assert row.status == "failed"
    assert row.error == failed.error
    assert row.requests == failed.requests
    service.broken_gateways.clear()
    await assert_ledger_consistent(postgres_url)


async def test_retries_stop_at_the_time_budget_even_with_attempts_left(sqlite_url: str) -> None:
    service = make_service(seed=7, sessions_per_gateway=10)
    workspace_id = service.workspace_ids(REGION)[0]
    broken = service.gateway_ids(workspace_id)[0]
    service.broken_gateways.add(broken)
    target = {"region_id": REGION, "workspace_id": workspace_id, "livy_compute_id": broken}
    env = {
        "HARVESTER_API__MAX_ATTEMPTS": "50",
        "HARVESTER_API__RETRY_BUDGET": "2",
        "HARVESTER_TARGETS": json.dumps([target]),
    }
    async with serve(service) as endpoint:
        started = time.monotonic()
        result = await run_sync(settings_for(sqlite_url, endpoint, **env), credentials=DEMO)
        elapsed_s = time.monotonic() - started
    (run,) = result.runs
    assert run.status == "failed"
    assert run.requests < 10
    assert elapsed_s < 2 + 2.5


async def test_cli_sync_under_the_fault_mix_exits_0_and_stores_exactly(postgres_url: str) -> None:
    service = make_service(seed=8)
    for kind in API_FAULTS:
        service.faults.set_rate(kind, FAULT_RATE)  # type: ignore[arg-type]
    async with serve(service) as endpoint:
        env = cli_env(endpoint, postgres_url)
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "harvester", "sync", env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=90)
    assert process.returncode == 0, stderr.decode()
    lines = stdout.decode().strip().splitlines()
    assert len(lines) == 5
    assert all(" status=succeeded " in line for line in lines)
    assert "Traceback" not in stderr.decode()
    assert sum(service.stats.faults.values()) > 0
    await assert_store_exact(service, postgres_url)
    await assert_ledger_consistent(postgres_url, first_pass=True)
