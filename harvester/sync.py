"""One pass over every target, then stop: the cron-style mode (composition root).

Wires settings to the engine, the API client, discovery and `harvest_gateway`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from harvester.api.client import ApiClient
from harvester.api.credentials import ChainCredentials, CredentialsProvider
from harvester.api.discovery import Discovery, discover
from harvester.db import locks, migrate, store
from harvester.db.engine import create_engine
from harvester.errors import ConfigError, StoreError
from harvester.harvest import PageCallback, RunSummary, harvest_gateway, utc_now
from harvester.records import Gateway
from harvester.settings import Settings, TargetSettings

log = logging.getLogger(__name__)


@dataclass(slots=True)
class SyncResult:
    """Every run of a sync, plus failures that happened before any run (discovery)."""

    runs: list[RunSummary] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors and all(run.status in ("succeeded", "skipped") for run in self.runs)


def select_gateways(gateways: Sequence[Gateway], wanted: Sequence[str]) -> list[Gateway]:
    """Gateways matching --target values: a gateway id, a workspace id or `workspace/gateway`."""
    if not wanted:
        return list(gateways)
    chosen = [g for g in gateways if {g.compute_id, g.workspace_id, g.key} & set(wanted)]
    unknown = [w for w in wanted if not any(w in (g.compute_id, g.workspace_id, g.key)
                                            for g in gateways)]  # fmt: skip
    if unknown:
        known = ", ".join(g.key for g in gateways) or "none"
        raise ConfigError(f"unknown target {', '.join(unknown)}; known gateways: {known}")
    return chosen


async def check_schema(engine: AsyncEngine) -> None:
    """Fail with a clear message unless the database is reachable and fully migrated."""
    try:
        async with engine.connect() as conn:
            current = await migrate.current_revision(conn)
    except (SQLAlchemyError, OSError) as exc:
        cause = getattr(exc, "orig", None) or exc
        raise StoreError(
            f"cannot reach the database {engine.url.render_as_string(hide_password=True)}: "
            f"{type(cause).__name__}"
        ) from None
    head = migrate.HEAD_REVISION
    if current != head:
        raise ConfigError(
            f"the database schema is at revision {current or 'none'}, this harvester needs "
            f"{head}: run `harvester migrate` first"
        )


async def close_abandoned_runs(engine: AsyncEngine) -> int:
    """Close as failed the runs a dead process left open (those whose lock is free)."""
    async with engine.connect() as conn:
        gateways = await store.gateways_with_open_runs(conn)
    closed = 0
    for gateway in gateways:
        async with locks.gateway_lock(engine, gateway) as lock:
            if lock.held:
                async with engine.begin() as conn:
                    closed += await store.fail_open_runs(conn, gateway, finished_at=utc_now())
    if closed:
        log.warning("closed %d run(s) left open by a stopped process", closed)
    return closed


async def discover_targets(
    engine: AsyncEngine, client: ApiClient, targets: Sequence[TargetSettings]
) -> Discovery:
    """Expand the configured targets into gateways and record them in harvest_targets."""
    found = await discover(client, targets)
    now = utc_now()
    async with engine.begin() as conn:
        await store.register_targets(conn, found.configured, origin="configured", seen_at=now)
        await store.register_targets(conn, found.discovered, origin="discovered", seen_at=now)
    return found


async def run_sync(
    settings: Settings,
    *,
    targets: Sequence[str] = (),
    full: bool = False,
    credentials: CredentialsProvider | None = None,
    on_page: PageCallback | None = None,
    on_gateways: Callable[[list[Gateway]], None] | None = None,
) -> SyncResult:
    """Discover, then harvest each gateway once, `max_parallel_targets` at a time.

    `full` forces full passes; otherwise each gateway's mode follows `choose_mode`.
    """
    engine = create_engine(settings.database.url, pool_size=settings.database.pool_size)
    try:
        await check_schema(engine)
        await close_abandoned_runs(engine)
        credentials = credentials or ChainCredentials()
        await credentials.get()  # no credentials is a configuration error: say so up front
        async with ApiClient.open(settings.api, credentials) as client:
            return await _sync_with(engine, client, settings, targets, full, on_page, on_gateways)
    finally:
        await engine.dispose()


async def _sync_with(
    engine: AsyncEngine,
    client: ApiClient,
    settings: Settings,
    targets: Sequence[str],
    full: bool,
    on_page: PageCallback | None,
    on_gateways: Callable[[list[Gateway]], None] | None,
) -> SyncResult:
    result = SyncResult()
    if not settings.targets:
        raise ConfigError(f"{settings.source}: no [[targets]] configured; nothing to harvest")
    found = await discover_targets(engine, client, settings.targets)
    result.errors.extend(found.errors)
    gateways = select_gateways(found.gateways, targets)
    if on_gateways is not None:
        on_gateways(gateways)
    log.info("harvesting %d gateways", len(gateways))
    slots = asyncio.Semaphore(settings.harvest.max_parallel_targets)

    async def one(gateway: Gateway) -> RunSummary:
        async with slots:
            return await harvest_gateway(
                engine, client, gateway, page_size=settings.api.page_size, force_full=full,
                full_interval_s=settings.schedule.full_interval, on_page=on_page,
            )  # fmt: skip

    result.runs = list(await asyncio.gather(*(one(g) for g in gateways)))
    return result
