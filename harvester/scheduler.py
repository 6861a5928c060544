"""The daemon (composition root): APScheduler jobs per gateway, discovery, health, stop.

One job per gateway, never two runs of one gateway at once (`max_instances=1`, misfires
coalesced, across replicas by the advisory lock in `harvest_gateway`); a discovery job
adds jobs for new gateways and drops (and marks inactive) vanished ones. A database that
is down at start is waited for with backoff while /healthz says so. SIGTERM/SIGINT stop
scheduling, interrupt runs in flight (each page commits or rolls back; open runs are
closed as `interrupted`) and close the pools.
"""

from __future__ import annotations

import asyncio
import logging
import random
import signal
from collections.abc import AsyncIterator, Coroutine, Iterable, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, wait_exponential_jitter

from harvester.api.client import ApiClient
from harvester.api.credentials import ChainCredentials, CredentialsProvider
from harvester.db import store
from harvester.db.engine import create_engine
from harvester.errors import ConfigError, HarvesterError, StoreError
from harvester.harvest import RunSummary, harvest_gateway, utc_now
from harvester.metrics import Metrics
from harvester.records import Gateway
from harvester.server import Health, StatusServer, TargetHealth, assess_health
from harvester.settings import Settings, TargetSettings
from harvester.sync import check_schema, close_abandoned_runs, discover_targets

log = logging.getLogger(__name__)

#: a target is stale after this many periods without success (when no health_max_age is set)
HEALTH_PERIODS = 3
#: ... but never sooner than this: a run itself takes time
MIN_HEALTH_MAX_AGE_S = 60.0
#: the longest pause between two attempts to reach a database that is down
DATABASE_RETRY_MAX_WAIT_S = 30.0
#: how long /healthz waits for the database before calling it unreachable
HEALTH_DATABASE_TIMEOUT_S = 5.0


# -- schedule decisions (pure) ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class JobSchedule:
    """When one gateway is harvested: a crontab line (wins) or an interval, plus jitter."""

    interval_s: float
    jitter_s: float
    cron: str | None = None


def covers(target: TargetSettings, gateway: Gateway) -> bool:
    """Whether the gateway falls within what the target names (region, workspace, gateway)."""
    return (
        target.region_id == gateway.region_id
        and target.workspace_id in (None, gateway.workspace_id)
        and target.livy_compute_id in (None, gateway.compute_id)
    )


def owning_target(gateway: Gateway, targets: Sequence[TargetSettings]) -> TargetSettings | None:
    """The most specific target covering the gateway: gateway, then workspace, then region."""
    matching = [t for t in targets if covers(t, gateway)]
    if not matching:
        return None
    return max(matching, key=lambda t: (t.livy_compute_id is not None, t.workspace_id is not None))


def schedule_for(gateway: Gateway, settings: Settings) -> JobSchedule:
    """The gateway's schedule: its target's interval/cron override, else [schedule]."""
    default = settings.schedule
    target = owning_target(gateway, settings.targets)
    if target is not None and target.cron:
        return JobSchedule(interval_s=default.interval, jitter_s=default.jitter, cron=target.cron)
    if target is not None and target.interval is not None:
        return JobSchedule(interval_s=target.interval, jitter_s=default.jitter)
    return JobSchedule(interval_s=default.interval, jitter_s=default.jitter, cron=default.cron)


def _cron_trigger(expression: str, jitter_s: float | None) -> CronTrigger:
    minute, hour, day, month, day_of_week = expression.split()
    return CronTrigger(
        minute=minute, hour=hour, day=day, month=month, day_of_week=day_of_week,
        timezone=UTC, jitter=jitter_s or None,
    )  # fmt: skip


def harvest_trigger(schedule: JobSchedule) -> BaseTrigger:
    """The APScheduler trigger of a gateway's job."""
    if schedule.cron:
        return _cron_trigger(schedule.cron, schedule.jitter_s)
    return IntervalTrigger(
        seconds=schedule.interval_s, jitter=schedule.jitter_s or None, timezone=UTC
    )


def period_s(schedule: JobSchedule, now: datetime) -> float:
    """Seconds between two runs: the interval, or the gap between the next two cron times."""
    if not schedule.cron:
        return schedule.interval_s
    trigger = _cron_trigger(schedule.cron, None)
    first = trigger.get_next_fire_time(None, now)
    second = trigger.get_next_fire_time(first, first + timedelta(seconds=1))
    if first is None or second is None:
        return schedule.interval_s
    return float((second - first).total_seconds())


def misfire_grace_s(schedule: JobSchedule, now: datetime) -> int:
    """A run late by up to one period still runs; later than that it is coalesced away."""
    return max(1, int(period_s(schedule, now)))


def health_max_age_s(schedule: JobSchedule, configured_s: float | None, now: datetime) -> float:
    """How old a target's last success may be: [server] health_max_age, else a few periods."""
    if configured_s is not None:
        return configured_s
    derived = HEALTH_PERIODS * period_s(schedule, now) + schedule.jitter_s
    return max(derived, MIN_HEALTH_MAX_AGE_S)


def vanished_gateways(
    known: Iterable[Gateway], found_keys: set[str], listed: Sequence[TargetSettings]
) -> list[Gateway]:
    """Known gateways that a successfully discovered target covers but no longer lists."""
    gone = {
        gateway.key: gateway
        for gateway in known
        if gateway.key not in found_keys and any(covers(t, gateway) for t in listed)
    }
    return sorted(gone.values())


# -- discovery -------------------------------------------------------------------------------


@dataclass(slots=True)
class DiscoveryRound:
    """What one discovery round found, what vanished, and which targets failed."""

    gateways: list[Gateway] = field(default_factory=list)
    vanished: list[Gateway] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


async def discovery_round(
    engine: AsyncEngine,
    client: ApiClient,
    targets: Sequence[TargetSettings],
    scheduled: Iterable[Gateway] = (),
) -> DiscoveryRound:
    """Discover each target, register what it lists, deactivate what it no longer lists.

    A target whose discovery failed deactivates nothing: an error is not an empty answer.
    """
    result = DiscoveryRound()
    found: dict[str, Gateway] = {}
    listed: list[TargetSettings] = []
    for target in targets:
        discovery = await discover_targets(engine, client, [target])
        found.update((gateway.key, gateway) for gateway in discovery.gateways)
        result.errors.extend(discovery.errors)
        if not discovery.errors:
            listed.append(target)
    async with engine.connect() as conn:
        active = await store.active_gateways(conn)
    result.vanished = vanished_gateways([*active, *scheduled], set(found), listed)
    if result.vanished:
        async with engine.begin() as conn:
            await store.deactivate_targets(conn, result.vanished)
    result.gateways = sorted(found.values())
    return result


# -- the daemon ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Scheduled:
    gateway: Gateway
    since: datetime
    max_age_s: float


class Daemon:
    """Harvests every target on schedule until stopped."""

    def __init__(
        self,
        settings: Settings,
        credentials: CredentialsProvider | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self._settings = settings
        self._credentials = credentials
        self.metrics = metrics or Metrics()
        self.server: StatusServer | None = None
        self._stop = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._engine: AsyncEngine | None = None
        self._scheduled: dict[str, _Scheduled] = {}

    def stop(self) -> None:
        self._stop.set()

    @property
    def scheduled(self) -> list[Gateway]:
        """The gateways that have a job."""
        return [entry.gateway for entry in self._scheduled.values()]

    async def run(self) -> None:
        """Run until `stop()` or SIGTERM/SIGINT; ConfigError for what an operator must fix."""
        settings = self._settings
        if not settings.targets:
            raise ConfigError(f"{settings.source}: no [[targets]] configured; nothing to harvest")
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop)
        engine = create_engine(settings.database.url, pool_size=settings.database.pool_size)
        self._engine = engine
        try:
            # Serve first, so operators see a 503 while the database is awaited.
            if (address := settings.server.address) is not None:
                self.server = StatusServer(*address, self.health, self.metrics)
                await self.server.start()
            credentials = self._credentials or ChainCredentials()
            await credentials.get()
            if not await self._wait_for_database(engine):
                return
            async with ApiClient.open(settings.api, credentials) as client:
                client.observers.append(self.metrics.observe_request)
                self.metrics.watch_client(client.stats)
                await self._serve(engine, client)
        finally:
            if self.server is not None:
                await self.server.stop()
            await engine.dispose()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)

    async def health(self) -> Health:
        """The /healthz answer: the database is asked live, successes come from the store."""
        successes: dict[str, datetime | None] = {}
        database_ok = False
        if self._engine is not None:
            try:
                async with asyncio.timeout(HEALTH_DATABASE_TIMEOUT_S):
                    async with self._engine.connect() as conn:
                        successes = await store.last_successes(conn)
                database_ok = True
            except (SQLAlchemyError, OSError, TimeoutError):
                database_ok = False
        self.metrics.database_up.set(1 if database_ok else 0)
        targets = {
            key: TargetHealth(successes.get(key), entry.since, entry.max_age_s)
            for key, entry in self._scheduled.items()
        }
        return assess_health(database_ok=database_ok, now=utc_now(), targets=targets)

    async def _until_stopped(self, work: Coroutine[Any, Any, None]) -> bool:
        """Await `work` unless stop comes first (then cancel it); whether it completed."""
        task = asyncio.ensure_future(work)
        stopping = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
        if not task.done():
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task
            return False
        task.result()
        return True

    async def _sleep_unless_stopped(self, seconds: float) -> None:
        with suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)

    async def _wait_for_database(self, engine: AsyncEngine) -> bool:
        """Retry with backoff until the database answers; False when stopped meanwhile."""

        async def attempt() -> None:
            await check_schema(engine)  # ConfigError (not migrated) is not retried
            try:
                await close_abandoned_runs(engine)
            except (SQLAlchemyError, OSError) as exc:
                raise StoreError(f"database error: {type(exc).__name__}") from None

        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            wait_s = state.next_action.sleep if state.next_action else 0.0
            log.warning("%s; retrying in %.0fs", exc, wait_s)

        retrying = AsyncRetrying(
            retry=retry_if_exception_type(StoreError),
            wait=wait_exponential_jitter(initial=1.0, max=DATABASE_RETRY_MAX_WAIT_S, jitter=1.0),
            stop=lambda _state: self._stop.is_set(),
            sleep=self._sleep_unless_stopped,
            before_sleep=before_sleep,
            reraise=True,
        )
        try:
            async for trial in retrying:
                with trial:
                    if not await self._until_stopped(attempt()):
                        return False
        except StoreError:
            if self._stop.is_set():
                return False
            raise
        return not self._stop.is_set()

    @asynccontextmanager
    async def _tracked(self) -> AsyncIterator[None]:
        """Register the current task so a stop can cancel and await it."""
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            yield
        finally:
            self._tasks.discard(task)

    async def _harvest_once(
        self, engine: AsyncEngine, client: ApiClient, gateway: Gateway
    ) -> RunSummary:
        """One run of one gateway: the daemon's only call to `harvest_gateway`."""
        return await harvest_gateway(
            engine,
            client,
            gateway,
            page_size=self._settings.api.page_size,
            full_interval_s=self._settings.schedule.full_interval,
        )

    async def _serve(self, engine: AsyncEngine, client: ApiClient) -> None:
        scheduler = AsyncIOScheduler(timezone=UTC)
        # One slot per run in flight: a slow gateway holds one slot, never more
        # (max_instances=1), so the others keep theirs.
        slots = asyncio.Semaphore(self._settings.harvest.max_parallel_targets)

        async def harvest(gateway: Gateway) -> None:
            async with self._tracked():
                async with slots:
                    summary = await self._harvest_once(engine, client, gateway)
                self.metrics.observe_run(summary, utc_now())
                if summary.status != "succeeded":
                    return  # harvest_gateway logged why
                log.info(
                    "run %s: %d new, %d updated, %d unchanged in %.1fs",
                    summary.status, summary.inserted, summary.updated, summary.unchanged,
                    summary.duration_s, extra={"target": gateway.key},
                )  # fmt: skip

        def add_job(gateway: Gateway) -> None:
            plan = schedule_for(gateway, self._settings)
            now = utc_now()
            scheduler.add_job(
                harvest, harvest_trigger(plan), args=[gateway], id=f"harvest:{gateway.key}",
                max_instances=1, coalesce=True, misfire_grace_time=misfire_grace_s(plan, now),
                next_run_time=now + timedelta(seconds=random.uniform(0, plan.jitter_s)),
            )  # fmt: skip
            max_age_s = health_max_age_s(plan, self._settings.server.health_max_age, now)
            self._scheduled[gateway.key] = _Scheduled(gateway, now, max_age_s)
            log.info(
                "scheduled every %s", plan.cron or f"{plan.interval_s:g}s",
                extra={"target": gateway.key},
            )  # fmt: skip

        async def rediscover() -> None:
            async with self._tracked():
                try:
                    found = await discovery_round(
                        engine, client, self._settings.targets, self.scheduled
                    )
                except (SQLAlchemyError, OSError) as exc:
                    self.metrics.discoveries.labels(outcome="failed").inc()
                    cause = getattr(exc, "orig", None) or exc
                    log.error("discovery failed: database error %s", type(cause).__name__)
                    return
                except HarvesterError as exc:  # e.g. credentials that can no longer refresh
                    self.metrics.discoveries.labels(outcome="failed").inc()
                    log.error("discovery failed: %s", exc.message)
                    return
                self.metrics.discoveries.labels(outcome="partial" if found.errors else "ok").inc()
                for gateway in found.vanished:
                    if self._scheduled.pop(gateway.key, None) is not None:
                        scheduler.remove_job(f"harvest:{gateway.key}")
                    log.info(
                        "gateway no longer listed: marked inactive, not harvested any more",
                        extra={"target": gateway.key},
                    )
                for gateway in found.gateways:
                    if gateway.key not in self._scheduled:
                        add_job(gateway)
                self.metrics.targets.set(len(self._scheduled))

        scheduler.add_job(
            rediscover,
            IntervalTrigger(seconds=self._settings.schedule.discovery_interval, timezone=UTC),
            id="discovery", max_instances=1, coalesce=True, next_run_time=utc_now(),
        )  # fmt: skip
        scheduler.start()
        log.info("daemon started")
        try:
            await self._stop.wait()
        finally:
            log.info("stopping: %d tasks in flight", len(self._tasks))
            scheduler.shutdown(wait=False)
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            log.info("daemon stopped")
