"""`harvester run` as operators deploy it: two replicas on one PostgreSQL, the simulator
as the service, /healthz and /metrics, SIGTERM, and no secret anywhere in what it emits."""

from __future__ import annotations

import asyncio
import itertools
import json
import signal
import socket
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from simkit import cli_env
from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from harvester.db.engine import create_engine
from harvester.db.tables import harvest_runs, harvest_targets, livy_sessions, session_state_changes
from harvester.simulator import DEMO_ACCESS_KEY_ID, DEMO_ACCESS_KEY_SECRET, SimulatedService, serve

pytestmark = pytest.mark.postgres

HARVESTER = [sys.executable, "-m", "harvester"]
REGION = "cn-hangzhou"


def free_port() -> int:
    """A port nothing listens on right now, for a subprocess to bind."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def base_env(**values: str) -> dict[str, str]:
    return cli_env(
        **{
            "HARVESTER_SCHEDULE__INTERVAL": "1s",
            "HARVESTER_SCHEDULE__JITTER": "0.2s",
            "HARVESTER_SCHEDULE__DISCOVERY_INTERVAL": "2s",
            "HARVESTER_API__REQUESTS_PER_SECOND": "1000",
            **values,
        }
    )


@dataclass
class Replica:
    """One `harvester run` subprocess, its status port and its captured output."""

    process: asyncio.subprocess.Process
    port: int
    stdout: Path
    stderr: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.stdout.read_text() + self.stderr.read_text()


@pytest.fixture
async def start(tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[Replica]]]:
    replicas: list[Replica] = []

    async def start_replica(env: dict[str, str], *args: str) -> Replica:
        index = len(replicas)
        port = free_port()
        stdout, stderr = tmp_path / f"run{index}.out", tmp_path / f"run{index}.err"
        with stdout.open("w") as out, stderr.open("w") as err:
            process = await asyncio.create_subprocess_exec(
                *HARVESTER, "run", *args, cwd=tmp_path, stdout=out, stderr=err,
                env={**env, "HARVESTER_SERVER__LISTEN": f"127.0.0.1:{port}"},
            )  # fmt: skip
        replica = Replica(process, port, stdout, stderr)
        replicas.append(replica)
        return replica

    yield start_replica
    for replica in replicas:
        if replica.process.returncode is None:
            replica.process.kill()
            await replica.process.wait()


async def migrate(env: dict[str, str], cwd: Path) -> None:
    process = await asyncio.create_subprocess_exec(
        *HARVESTER, "migrate", env=env, cwd=cwd,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await process.communicate()
    assert process.returncode == 0, err.decode()


async def wait_until(
    check: Callable[[], Awaitable[bool]], what: str, timeout_s: float = 20
) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not await check():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.25)


async def get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        return response.status, await response.text()


async def stop(replicas: list[Replica]) -> None:
    """SIGTERM every replica; each must exit 0 within 10 s."""
    for replica in replicas:
        replica.process.send_signal(signal.SIGTERM)
    for replica in replicas:
        status = await asyncio.wait_for(replica.process.wait(), 10)
        assert status == 0, replica.stderr.read_text()[-3000:]


async def scalar(engine: AsyncEngine, query: Any) -> Any:
    async with engine.connect() as conn:
        return (await conn.execute(query)).scalar_one()


async def test_two_replicas_harvest_every_gateway_without_overlapping_runs(
    postgres_url: str, tmp_path: Path, start: Callable[..., Awaitable[Replica]]
) -> None:
    service = SimulatedService.generate(
        seed=8, workspaces=2, gateways_per_workspace=2, sessions_per_gateway=30, quirks=False
    )
    engine = create_engine(postgres_url)
    async with serve(service) as endpoint:
        env = base_env(
            ALIBABA_CLOUD_ACCESS_KEY_ID=DEMO_ACCESS_KEY_ID,
            ALIBABA_CLOUD_ACCESS_KEY_SECRET=DEMO_ACCESS_KEY_SECRET,
            HARVESTER_API__ENDPOINT=endpoint,
            HARVESTER_DATABASE_URL=postgres_url,
        )
        await migrate(env, tmp_path)
        replicas = [await start(env), await start(env)]
        try:
            gateways = {
                (ws, lc) for ws in service.workspace_ids(REGION) for lc in service.gateway_ids(ws)
            }
            assert len(gateways) == 5

            async def all_harvested() -> bool:
                harvested = await scalar(
                    engine,
                    select(func.count(func.distinct(harvest_runs.c.compute_id))).where(
                        harvest_runs.c.status == "succeeded"
                    ),
                )
                stored = await scalar(engine, select(func.count()).select_from(livy_sessions))
                return bool(harvested == 5 and stored == 120)

            await wait_until(all_harvested, "every gateway harvested by the replicas")

            # A new gateway, new sessions and a state change reach the store on schedule.
            workspace_id = service.workspace_ids(REGION)[0]
            new_gateway = service.add_gateway(workspace_id)
            newcomers = service.add_sessions(workspace_id, new_gateway, 7)
            existing_gateway = service.gateway_ids(workspace_id)[0]
            running = service.add_sessions(workspace_id, existing_gateway, 3, state="running")

            async def new_ones_stored() -> bool:
                stored = await scalar(
                    engine,
                    select(func.count())
                    .select_from(livy_sessions)
                    .where(livy_sessions.c.session_id.in_([*newcomers, *running])),
                )
                return bool(stored == 10)

            await wait_until(new_ones_stored, "new gateway and sessions stored")
            service.finish(running[0], "error")

            async def change_stored() -> bool:
                changes = await scalar(
                    engine,
                    select(func.count()).where(
                        session_state_changes.c.session_id == running[0],
                        session_state_changes.c.to_state == "error",
                    ),
                )
                return bool(changes == 1)

            await wait_until(change_stored, "the state change stored")

            async def each_harvested_twice() -> bool:
                async with engine.connect() as conn:
                    counts = list(
                        (
                            await conn.execute(
                                select(func.count())
                                .where(harvest_runs.c.status == "succeeded")
                                .group_by(harvest_runs.c.workspace_id, harvest_runs.c.compute_id)
                            )
                        ).scalars()
                    )
                return len(counts) == 6 and min(counts) >= 2

            await wait_until(each_harvested_twice, "every gateway harvested again on schedule")

            for replica in replicas:

                async def sees_six(replica: Replica = replica) -> bool:
                    status, body = await get(f"{replica.url}/healthz")
                    assert status == 200, body
                    health = json.loads(body)
                    assert health["database"] == "ok"
                    assert health["stale_targets"] == []
                    return bool(health["targets"] == 6)  # each replica discovers on its own

                await wait_until(sees_six, "the new gateway scheduled on both replicas")
                status, metrics = await get(f"{replica.url}/metrics")
                assert status == 200
                assert "harvester_runs_total{" in metrics
                assert "harvester_api_requests_total{" in metrics
        finally:
            await stop(replicas)

    async with engine.connect() as conn:
        running_left = (
            await conn.execute(select(func.count()).where(harvest_runs.c.status == "running"))
        ).scalar_one()
        runs = (
            await conn.execute(
                select(
                    harvest_runs.c.workspace_id,
                    harvest_runs.c.compute_id,
                    harvest_runs.c.started_at,
                    harvest_runs.c.finished_at,
                    harvest_runs.c.status,
                ).order_by(harvest_runs.c.started_at)
            )
        ).all()
        active = (
            await conn.execute(select(func.count()).where(harvest_targets.c.active.is_(True)))
        ).scalar_one()
    await engine.dispose()
    assert running_left == 0
    assert active == 6
    by_gateway: dict[tuple[str, str], list[Any]] = {}
    for run in runs:
        by_gateway.setdefault((run.workspace_id, run.compute_id), []).append(run)
    assert len(by_gateway) == 6
    for key, gateway_runs in by_gateway.items():
        for earlier, later in itertools.pairwise(gateway_runs):
            assert earlier.finished_at <= later.started_at, (key, earlier, later)
    assert {run.status for run in runs} <= {"succeeded", "interrupted"}


async def test_no_secret_reaches_logs_metrics_health_or_the_database(
    postgres_url: str, tmp_path: Path, start: Callable[..., Awaitable[Replica]]
) -> None:
    key_id, secret, token = "STS.e2e-key", "Acc3ss-Secret-e2e-7f3a91", "Sts-T0ken-e2e-c4d2b8"
    password = "Db-Passw0rd-e2e-5e6f"
    database_url = make_url(postgres_url).set(password=password).render_as_string(False)
    service = SimulatedService.generate(
        seed=9, workspaces=1, gateways_per_workspace=2, sessions_per_gateway=10, empty_gateways=0
    )
    workspace_id = service.workspace_ids(REGION)[0]
    engine = create_engine(postgres_url)
    async with serve(
        service, access_keys={key_id: secret}, security_tokens={key_id: token}
    ) as endpoint:
        env = base_env(
            ALIBABA_CLOUD_ACCESS_KEY_ID=key_id,
            ALIBABA_CLOUD_ACCESS_KEY_SECRET=secret,
            ALIBABA_CLOUD_SECURITY_TOKEN=token,
            HARVESTER_API__ENDPOINT=endpoint,
            HARVESTER_DATABASE_URL=database_url,
            HARVESTER_TARGETS=json.dumps(
                [
                    {"region_id": REGION},
                    {
                        "region_id": REGION,
                        "workspace_id": workspace_id,
                        "livy_compute_id": "lc-does-not-exist",
                    },
                ]
            ),
        )
        await migrate(env, tmp_path)
        replica = await start(env, "--log-level", "DEBUG")
        try:

            async def both_outcomes() -> bool:
                async with engine.connect() as conn:
                    statuses = {
                        (compute_id, status)
                        for compute_id, status in await conn.execute(
                            select(harvest_runs.c.compute_id, harvest_runs.c.status)
                        )
                    }
                return ("lc-does-not-exist", "failed") in statuses and sum(
                    status == "succeeded" for _, status in statuses
                ) == 2

            await wait_until(both_outcomes, "a failed and two succeeded gateways")
            _, health = await get(f"{replica.url}/healthz")
            _, metrics = await get(f"{replica.url}/metrics")
        finally:
            await stop([replica])
    async with engine.connect() as conn:
        errors = [e for (e,) in await conn.execute(select(harvest_runs.c.error)) if e]
    await engine.dispose()
    assert any("does not exist" in error for error in errors), errors
    emitted = {
        "output": replica.output(),
        "healthz": health,
        "metrics": metrics,
        "harvest_runs.error": "\n".join(errors),
    }
    assert "run failed" in emitted["output"]
    for where, text in emitted.items():
        for value in (secret, token, password):
            assert value not in text, f"{where} contains a secret"
