"""Process faults: SIGKILL a `harvester sync` at a random moment, then sync again: the
store ends exact, no run stays `running`, and no session was seen "first" twice."""

from __future__ import annotations

import asyncio
import random
import signal
import sys

import asyncpg
import pytest
from faultkit import (
    assert_ledger_consistent,
    assert_store_exact,
    cli_env,
    make_service,
    postgres_dsn,
    settings_for,
)
from simkit import DEMO

from harvester.simulator import serve
from harvester.sync import run_sync


async def wait_for_first_run(database_url: str, timeout_s: float = 30) -> None:
    """Until the killed process has started harvesting (a run row exists)."""
    conn = await asyncpg.connect(postgres_dsn(database_url), timeout=5)
    try:
        async with asyncio.timeout(timeout_s):
            while not await conn.fetchval("SELECT count(*) FROM harvest_runs"):  # noqa: ASYNC110
                await asyncio.sleep(0.05)  # another process writes it: nothing to wait on here
    finally:
        await conn.close()


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_sigkill_at_a_random_moment_then_sync_is_exact(seed: int, postgres_url: str) -> None:
    moment = random.Random(seed)
    service = make_service(seed=30 + seed, sessions_per_gateway=80)
    service.faults.delay_s = 0.08  # about 3 s of harvesting: room for a random moment
    async with serve(service) as endpoint:
        env = cli_env(
            endpoint,
            postgres_url,
            HARVESTER_API__PAGE_SIZE="10",
            HARVESTER_HARVEST__MAX_PARALLEL_TARGETS="1",
        )
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "harvester", "sync", env=env,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        try:
            await wait_for_first_run(postgres_url)
            await asyncio.sleep(moment.uniform(0.0, 1.2))
        finally:
            if process.returncode is None:
                process.send_signal(signal.SIGKILL)
            await process.wait()
        assert process.returncode == -signal.SIGKILL  # killed mid-sync, not after it ended

        service.faults.delay_s = 0.0
        result = await run_sync(settings_for(postgres_url, endpoint), credentials=DEMO)
    assert result.ok, [r.error for r in result.runs] + result.errors
    await assert_store_exact(service, postgres_url)
    await assert_ledger_consistent(postgres_url)
