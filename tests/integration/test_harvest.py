"""Harvest end to end: the simulator over real HTTP into PostgreSQL and SQLite."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from simkit import DEMO, REGION, listed, settings_for
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from harvester.api.credentials import StaticCredentials
from harvester.api.signing import Credentials
from harvester.db.engine import create_engine
from harvester.db.tables import harvest_runs, harvest_targets, livy_sessions, session_state_changes
from harvester.settings import Settings
from harvester.simulator import (
    DEMO_ACCESS_KEY_ID,
    SimulatedService,
    serve,
)
from harvester.sync import SyncResult, run_sync


@pytest.fixture
def service() -> SimulatedService:
    # 2 workspaces x 2 gateways x 600 quirky sessions, plus one empty gateway.
    return SimulatedService.generate(
        seed=11, workspaces=2, gateways_per_workspace=2, sessions_per_gateway=600
    )


def as_time(value: Any) -> datetime | None:
    """What the store keeps for an epoch-ms field, computed independently of normalize."""
    if value in (None, 0, "0"):
        return None
    return datetime.fromtimestamp(int(float(value)) / 1000, UTC)


def expected_row(workspace_id: str, compute_id: str, raw: dict[str, Any]) -> dict[str, Any]:
    conf_raw = raw.get("sparkConf")
    try:
        conf = json.loads(conf_raw) if isinstance(conf_raw, str) else None
    except ValueError:
        conf = None
    conf = conf if isinstance(conf, dict) else None
    info = raw.get("info")
    return {
        "workspace_id": workspace_id,
        "compute_id": raw.get("computeId") or compute_id,
        "region_id": REGION,
        "name": raw.get("name"),
        "state": raw.get("state"),
        "spark_conf": conf,
        "spark_conf_raw": conf_raw,
        "proxy_user": conf.get("proxyUser") if conf else None,
        "queue": raw.get("queue"),
        "info": None if info in (None, "null") else info,
        "web_ui": raw.get("webUI"),
        "create_time": as_time(raw.get("createTime")),
        "end_time": as_time(raw.get("endTime")),
        "cu_hours": None if raw.get("cuHours") is None else Decimal(str(raw["cuHours"])),
        "vcore_seconds": None if raw.get("vcoreSeconds") is None else int(raw["vcoreSeconds"]),
        "mb_seconds": None if raw.get("mbSeconds") is None else int(raw["mbSeconds"]),
        "raw": raw,
    }


async def stored_rows(engine: AsyncEngine) -> dict[str, dict[str, Any]]:
    async with engine.connect() as conn:
        rows = (await conn.execute(select(livy_sessions))).mappings().all()
    result = {}
    for row in rows:
        values = dict(row)
        if values["cu_hours"] is not None:
            values["cu_hours"] = Decimal(str(values["cu_hours"])).normalize()
        result[row["session_id"]] = values
    return result


def assert_exact(service: SimulatedService, rows: dict[str, dict[str, Any]]) -> None:
    api = listed(service)
    assert set(rows) == set(api)
    mismatches = []
    for session_id, (workspace_id, compute_id, raw) in api.items():
        expected = expected_row(workspace_id, compute_id, raw)
        if expected["cu_hours"] is not None:
            expected["cu_hours"] = expected["cu_hours"].normalize()
        actual = {key: rows[session_id][key] for key in expected}
        differences = {k: (actual[k], expected[k]) for k in expected if actual[k] != expected[k]}
        if differences:
            mismatches.append((session_id, differences))
    assert mismatches == []


async def sync(settings: Settings, **kwargs: Any) -> SyncResult:
    return await run_sync(settings, credentials=kwargs.pop("credentials", DEMO), **kwargs)


async def test_sync_stores_exactly_what_the_api_lists(
    service: SimulatedService, endpoint: str, database_url: str
) -> None:
    settings = settings_for(database_url, endpoint)
    result = await sync(settings)
    assert result.ok, [r.error for r in result.runs]
    assert len(result.runs) == 5  # four gateways with sessions and the empty one
    assert sum(r.inserted for r in result.runs) == 2400
    engine = create_engine(database_url)
    try:
        assert_exact(service, await stored_rows(engine))
        async with engine.connect() as conn:
            targets = (await conn.execute(select(harvest_targets))).all()
            runs = (await conn.execute(select(harvest_runs))).all()
            first_sight = (
                await conn.execute(select(func.count()).select_from(session_state_changes))
            ).scalar_one()
        assert len(targets) == 5
        assert {t.origin for t in targets} == {"discovered"}
        assert all(t.last_success_at is not None for t in targets)
        assert {r.status for r in runs} == {"succeeded"}
        assert sum(r.pages for r in runs) == sum(r.pages for r in result.runs)
        assert sum(r.sessions_inserted for r in runs) == 2400
        assert first_sight == 2400
    finally:
        await engine.dispose()


async def test_second_sync_changes_nothing_then_changes_land(
    service: SimulatedService, endpoint: str, database_url: str
) -> None:
    settings = settings_for(database_url, endpoint)
    first = await sync(settings)
    assert first.ok
    engine = create_engine(database_url)
    try:
        before = await stored_rows(engine)
        quiet = await sync(settings)  # incremental: the head, and the open sessions' pages
        assert quiet.ok
        assert {r.mode for r in quiet.runs} == {"incremental"}
        assert sum(r.inserted + r.updated for r in quiet.runs) == 0
        assert sum(r.requests for r in quiet.runs) < sum(r.requests for r in first.runs)
        again = await sync(settings, full=True)
        assert again.ok
        assert {r.mode for r in again.runs} == {"full"}
        assert sum(r.inserted + r.updated for r in again.runs) == 0
        assert sum(r.unchanged for r in again.runs) == 2400
        assert await stored_rows(engine) == before

        # Sessions finish and usage grows; a new one starts.
        workspace_id = service.workspace_ids(REGION)[0]
        compute_id = service.gateway_ids(workspace_id)[0]
        running = [
            sid for sid in service.session_ids(workspace_id, compute_id)
            if service.record(sid).get("state") in ("running", "starting")
        ]  # fmt: skip
        assert running, "the generated data should have running sessions"
        for session_id in running:
            service.finish(session_id)
        service.add_sessions(workspace_id, compute_id, 3, state="running")

        third = await sync(settings)  # incremental: finds the new and the finished ones
        assert third.ok
        assert {r.mode for r in third.runs} == {"incremental"}
        assert sum(r.inserted for r in third.runs) == 3
        assert sum(r.updated for r in third.runs) == len(running)
        after = await stored_rows(engine)
        assert_exact(service, after)
        async with engine.connect() as conn:
            changes = (
                await conn.execute(
                    select(session_state_changes).where(
                        session_state_changes.c.from_state.is_not(None)
                    )
                )
            ).all()
        assert {c.session_id for c in changes} == set(running)
        assert {c.to_state for c in changes} <= {"terminated", "error"}
        for session_id in running:
            assert after[session_id]["updated_at"] > before[session_id]["updated_at"]
            assert after[session_id]["first_seen_at"] == before[session_id]["first_seen_at"]
    finally:
        await engine.dispose()


async def test_faults_are_retried_and_the_store_ends_exact(
    service: SimulatedService, endpoint: str, sqlite_url: str
) -> None:
    service.faults.force("http_500", 2)
    service.faults.force("throttle_400")
    service.faults.force("http_502_html")
    service.faults.retry_after_ms = 200
    settings = settings_for(sqlite_url, endpoint)
    result = await sync(settings)
    assert result.ok, [r.error for r in result.runs]
    engine = create_engine(sqlite_url)
    try:
        assert_exact(service, await stored_rows(engine))
        async with engine.connect() as conn:
            requests = (await conn.execute(select(func.sum(harvest_runs.c.requests)))).scalar()
            pages = (await conn.execute(select(func.sum(harvest_runs.c.pages)))).scalar()
    finally:
        await engine.dispose()
    # Discovery may absorb some forced faults; whatever hit the listing was counted.
    assert requests >= pages


async def test_empty_page_that_contradicts_total_is_read_again(
    service: SimulatedService, endpoint: str, sqlite_url: str
) -> None:
    settings = settings_for(sqlite_url, endpoint, HARVESTER_TARGETS=json.dumps([{
        "region_id": REGION,
        "workspace_id": service.workspace_ids(REGION)[0],
        "livy_compute_id": service.gateway_ids(service.workspace_ids(REGION)[0])[0],
    }]))  # fmt: skip
    service.faults.force("empty_page")
    result = await sync(settings)
    assert result.ok
    (run,) = result.runs
    assert run.rereads == 1
    assert run.inserted == 600


async def test_wrong_secret_fails_clearly_without_the_secret(
    endpoint: str, sqlite_url: str
) -> None:
    secret = "wrong-secret-value-123"
    wrong = StaticCredentials(Credentials(DEMO_ACCESS_KEY_ID, secret))
    result = await sync(settings_for(sqlite_url, endpoint), credentials=wrong)
    assert not result.ok
    text = " ".join(result.errors + [r.error or "" for r in result.runs])
    assert "signature or credentials" in text
    assert secret not in text


async def test_unknown_gateway_fails_alone(
    service: SimulatedService, endpoint: str, sqlite_url: str
) -> None:
    workspace_id = service.workspace_ids(REGION)[0]
    targets = [
        {"region_id": REGION, "workspace_id": workspace_id, "livy_compute_id": "lc-missing"},
        {"region_id": REGION, "workspace_id": workspace_id},
    ]
    settings = settings_for(sqlite_url, endpoint, HARVESTER_TARGETS=json.dumps(targets))
    result = await sync(settings)
    by_gateway = {r.gateway.compute_id: r for r in result.runs}
    assert by_gateway["lc-missing"].status == "failed"
    assert "not found" in (by_gateway["lc-missing"].error or "")
    others = [r for key, r in by_gateway.items() if key != "lc-missing"]
    assert others
    assert all(r.status == "succeeded" for r in others)


async def test_sts_credentials_are_signed(service: SimulatedService, sqlite_url: str) -> None:
    keys = {"STS.key": "sts-secret"}
    async with serve(service, access_keys=keys, security_tokens={"STS.key": "token-1"}) as url:
        sts = StaticCredentials(Credentials("STS.key", "sts-secret", "token-1"))
        result = await sync(settings_for(sqlite_url, url), credentials=sts)
        assert result.ok
        bad = StaticCredentials(Credentials("STS.key", "sts-secret", "token-2"))
        assert not (await sync(settings_for(sqlite_url, url), credentials=bad)).ok


async def test_dropped_connections_and_bad_bodies_are_retried(
    service: SimulatedService, endpoint: str, sqlite_url: str
) -> None:
    for kind in ("disconnect", "disconnect_mid_body", "truncated_json", "malformed_json"):
        service.faults.force(kind)
    service.faults.force("throttle_429")
    service.faults.retry_after_ms = 100
    result = await sync(settings_for(sqlite_url, endpoint))
    assert result.ok, [r.error for r in result.runs] + result.errors
    engine = create_engine(sqlite_url)
    try:
        assert_exact(service, await stored_rows(engine))
    finally:
        await engine.dispose()
