"""The daemon in-process: discovery rounds that deactivate vanished gateways, the status
endpoint, and a database that is not there."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import simkit
import yaml
from simkit import DEMO
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from harvester.api.client import ApiClient
from harvester.db import store
from harvester.db.engine import create_engine
from harvester.db.tables import harvest_runs, harvest_targets
from harvester.errors import ConfigError
from harvester.harvest import harvest_gateway, utc_now
from harvester.records import Gateway
from harvester.scheduler import Daemon, discovery_round
from harvester.settings import Settings
from harvester.simulator import (
    SimulatedService,
)


@pytest.fixture
def service() -> SimulatedService:
    # 2 workspaces x 2 gateways x 20 sessions, plus one empty gateway: 5 gateways.
    return SimulatedService.generate(
        seed=5, workspaces=2, gateways_per_workspace=2, sessions_per_gateway=20, quirks=False
    )


def settings_for(database_url: str, endpoint: str, **env: str) -> Settings:
    """Two attempts per request, and the status server on a free port."""
    daemon_env = {"HARVESTER_API__MAX_ATTEMPTS": "2", "HARVESTER_SERVER__LISTEN": "127.0.0.1:0"}
    return simkit.settings_for(database_url, endpoint, **{**daemon_env, **env})


async def active_flags(engine: AsyncEngine) -> dict[str, bool]:
    columns = harvest_targets.c
    async with engine.connect() as conn:
        rows = await conn.execute(select(columns.workspace_id, columns.compute_id, columns.active))
    return {f"{ws}/{lc}": active for ws, lc, active in rows}


async def test_vanished_gateways_are_deactivated_but_never_on_a_discovery_error(
    engine: AsyncEngine, database_url: str, endpoint: str, service: SimulatedService
) -> None:
    settings = settings_for(database_url, endpoint)
    async with ApiClient.open(settings.api, DEMO) as client:
        first = await discovery_round(engine, client, settings.targets)
        assert len(first.gateways) == 5
        assert first.vanished == []
        assert first.errors == []
        doomed = first.gateways[0]
        summary = await harvest_gateway(engine, client, doomed, page_size=100)
        assert summary.status == "succeeded"
        # The service forgets the gateway (the simulator has no API for deleting one).
        workspace = service._workspaces[doomed.workspace_id]
        removed = workspace.gateways.pop(doomed.compute_id)

        # ListLivyCompute fails on both attempts (max_attempts=2): the target errors
        service.faults.force("error_code_200", 2)
        failed = await discovery_round(engine, client, settings.targets, [doomed])
        assert failed.errors
        assert failed.vanished == []
        assert all((await active_flags(engine)).values())

        listed = await discovery_round(engine, client, settings.targets, [doomed])
        assert listed.errors == []
        assert listed.vanished == [doomed]
        assert doomed not in listed.gateways
        flags = await active_flags(engine)
        assert flags.pop(doomed.key) is False
        assert len(flags) == 4
        assert all(flags.values())
        async with engine.connect() as conn:
            runs = (
                await conn.execute(
                    select(harvest_runs.c.status).where(
                        harvest_runs.c.compute_id == doomed.compute_id
                    )
                )
            ).all()
        assert runs == [("succeeded",)]  # history stays

        workspace.gateways[doomed.compute_id] = removed  # back again: active again
        again = await discovery_round(engine, client, settings.targets)
        assert again.vanished == []
        assert all((await active_flags(engine)).values())


async def compose_healthcheck(url: str) -> int:
    """Run docker-compose.yml's healthcheck of the harvester against `url`; its exit status."""
    compose = yaml.safe_load((Path(__file__).parents[2] / "docker-compose.yml").read_text())
    code = compose["services"]["harvester"]["healthcheck"]["test"][3]
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code.replace("http://127.0.0.1:9464", url),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    return await process.wait()


async def get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        return response.status, await response.text()


async def wait_for(predicate: Any, timeout_s: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.1)


@pytest.mark.postgres
async def test_daemon_serves_health_and_metrics(postgres_url: str, endpoint: str) -> None:
    settings = settings_for(
        postgres_url, endpoint, HARVESTER_SCHEDULE__INTERVAL="1s", HARVESTER_SCHEDULE__JITTER="0"
    )
    daemon = Daemon(settings, credentials=DEMO)
    task = asyncio.create_task(daemon.run())
    try:

        async def all_harvested() -> bool:
            text = daemon.metrics.render().decode()
            return text.count('status="succeeded"') >= 5

        await wait_for(all_harvested)
        assert daemon.server is not None
        assert daemon.server.url is not None
        status, body = await get(f"{daemon.server.url}/healthz")
        assert status == 200, body
        assert json.loads(body) == {
            "status": "ok",
            "database": "ok",
            "targets": 5,
            "stale_targets": [],
        }
        assert await compose_healthcheck(daemon.server.url) == 0
        status, metrics = await get(f"{daemon.server.url}/metrics")
        assert status == 200
        for name in (
            "harvester_runs_total{",
            "harvester_sessions_inserted_total{",
            "harvester_sessions_updated_total{",
            'harvester_api_requests_total{operation="ListLivyComputeSessions",outcome="200"}',
            'harvester_api_requests_total{operation="ListWorkspaces",outcome="200"}',
            "harvester_api_retries_total ",
            "harvester_api_throttled_total ",
            "harvester_last_success_timestamp_seconds{",
            "harvester_run_duration_seconds_bucket{",
            "harvester_targets 5.0",
            "harvester_database_up 1.0",
            'harvester_discoveries_total{outcome="ok"}',
        ):
            assert name in metrics, name
    finally:
        daemon.stop()
        await asyncio.wait_for(task, 10)


async def test_daemon_waits_for_the_database_and_says_so(endpoint: str) -> None:
    url = "postgresql://harvester:pw-not-shown@127.0.0.1:1/harvester"
    daemon = Daemon(settings_for(url, endpoint), credentials=DEMO)
    task = asyncio.create_task(daemon.run())
    try:

        async def serving() -> bool:
            return daemon.server is not None and daemon.server.url is not None

        await wait_for(serving)
        assert daemon.server is not None
        status, body = await get(f"{daemon.server.url}/healthz")
        assert status == 503
        assert json.loads(body)["database"] == "unreachable"
        assert "pw-not-shown" not in body
        assert await compose_healthcheck(daemon.server.url) != 0
        await asyncio.sleep(1.5)  # a retry or two later, still waiting, not exited
        assert not task.done()
    finally:
        daemon.stop()
        await asyncio.wait_for(task, 10)  # returns quietly: stopping while waiting is fine


async def test_daemon_refuses_an_unmigrated_database(tmp_path: Path, endpoint: str) -> None:
    settings = settings_for(f"sqlite:///{tmp_path / 'empty.db'}", endpoint)
    with pytest.raises(ConfigError, match="harvester migrate"):
        await asyncio.wait_for(Daemon(settings, credentials=DEMO).run(), 10)


async def test_daemon_refuses_a_busy_listen_address(sqlite_url: str, endpoint: str) -> None:
    first = Daemon(settings_for(sqlite_url, endpoint), credentials=DEMO)
    task = asyncio.create_task(first.run())
    try:

        async def serving() -> bool:
            return first.server is not None and first.server.url is not None

        await wait_for(serving)
        assert first.server is not None
        assert first.server.url is not None
        taken = first.server.url.removeprefix("http://")
        second = Daemon(
            settings_for(sqlite_url, endpoint, HARVESTER_SERVER__LISTEN=taken), credentials=DEMO
        )
        with pytest.raises(ConfigError, match=r"cannot listen on"):
            await second.run()
    finally:
        first.stop()
        await asyncio.wait_for(task, 10)


@pytest.mark.postgres
async def test_replicas_discovering_the_same_new_gateways_at_once_both_succeed(
    postgres_url: str, endpoint: str
) -> None:
    settings = settings_for(postgres_url, endpoint)
    engines = [create_engine(postgres_url), create_engine(postgres_url)]
    try:
        async with ApiClient.open(settings.api, DEMO) as client:
            rounds = await asyncio.gather(
                *(discovery_round(engine, client, settings.targets) for engine in engines)
            )
        assert [len(found.gateways) for found in rounds] == [5, 5]
        assert len(await active_flags(engines[0])) == 5
    finally:
        for engine in engines:
            await engine.dispose()


async def test_replicas_registering_the_same_new_gateways_at_once_never_collide(
    postgres_url: str,
) -> None:
    gateways = [Gateway("cn-hangzhou", "w-race", f"lc-{n}") for n in range(20)]
    engines = [create_engine(postgres_url) for _ in range(2)]

    async def register(engine: AsyncEngine) -> None:
        async with engine.begin() as conn:
            await store.register_targets(conn, gateways, origin="discovered", seen_at=utc_now())

    try:
        await asyncio.gather(*(register(e) for e in engines))
        async with engines[0].connect() as conn:
            assert len(await store.active_gateways(conn)) == 20
    finally:
        for engine in engines:
            await engine.dispose()
