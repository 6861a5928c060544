"""The daemon (composition root): APScheduler jobs per gateway, discovery, graceful stop.

One job per gateway, never two runs of one gateway at once (`max_instances=1`, misfires
coalesced); a discovery job adds jobs for new gateways and drops vanished ones.
SIGTERM/SIGINT stop scheduling, interrupt runs in flight (each page commits or rolls
back; open runs are closed as `interrupted`) and close the pools.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from datetime import UTC, datetime

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy.ext.asyncio import AsyncEngine

from harvester.api.client import ApiClient
from harvester.api.credentials import ChainCredentials, CredentialsProvider
from harvester.db.engine import create_engine
from harvester.harvest import harvest_gateway
from harvester.records import Gateway
from harvester.settings import Settings
from harvester.sync import check_schema, close_abandoned_runs, discover_targets

log = logging.getLogger(__name__)


def harvest_trigger(settings: Settings) -> BaseTrigger:
    """The trigger of every gateway's job, from [schedule]."""
    schedule = settings.schedule
    if schedule.cron:
        return CronTrigger.from_crontab(schedule.cron, timezone=UTC)
    return IntervalTrigger(seconds=schedule.interval, jitter=schedule.jitter or None, timezone=UTC)


class Daemon:
    """Harvests every target on schedule until stopped."""

    def __init__(self, settings: Settings, credentials: CredentialsProvider | None = None):
        self._settings = settings
        self._credentials = credentials
        self._stop = asyncio.Event()
        self._runs: set[asyncio.Task[object]] = set()

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        """Run until `stop()` or SIGTERM/SIGINT."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop)
        engine = create_engine(
            self._settings.database.url, pool_size=self._settings.database.pool_size
        )
        try:
            await check_schema(engine)
            await close_abandoned_runs(engine)
            credentials = self._credentials or ChainCredentials()
            await credentials.get()
            async with ApiClient.open(self._settings.api, credentials) as client:
                await self._serve(engine, client)
        finally:
            await engine.dispose()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)

    async def _serve(self, engine: AsyncEngine, client: ApiClient) -> None:
        scheduler = AsyncIOScheduler(timezone=UTC)
        slots = asyncio.Semaphore(self._settings.harvest.max_parallel_targets)
        trigger = harvest_trigger(self._settings)

        async def harvest(gateway: Gateway) -> None:
            task = asyncio.current_task()
            assert task is not None
            self._runs.add(task)
            try:
                async with slots:
                    summary = await harvest_gateway(
                        engine,
                        client,
                        gateway,
                        page_size=self._settings.api.page_size,
                        full_interval_s=self._settings.schedule.full_interval,
                    )
                log.info(
                    "run %s: %d new, %d updated, %d unchanged in %.1fs",
                    summary.status, summary.inserted, summary.updated, summary.unchanged,
                    summary.duration_s, extra={"target": gateway.key},
                )  # fmt: skip
            finally:
                self._runs.discard(task)

        async def rediscover() -> None:
            found = await discover_targets(engine, client, self._settings.targets)
            wanted = {g.key: g for g in found.gateways}
            for job in scheduler.get_jobs():
                if job.id.startswith("harvest:") and job.id[8:] not in wanted and not found.errors:
                    job.remove()
                    log.info(
                        "gateway no longer listed; not harvesting it", extra={"target": job.id[8:]}
                    )
            for key, gateway in wanted.items():
                if scheduler.get_job(f"harvest:{key}") is None:
                    scheduler.add_job(
                        harvest, trigger, args=[gateway], id=f"harvest:{key}",
                        max_instances=1, coalesce=True,
                        misfire_grace_time=int(self._settings.schedule.interval),
                        next_run_time=datetime.now(UTC),
                    )  # fmt: skip
                    log.info("scheduled", extra={"target": key})

        scheduler.add_job(
            rediscover,
            IntervalTrigger(seconds=self._settings.schedule.discovery_interval, timezone=UTC),
            id="discovery", max_instances=1, coalesce=True, next_run_time=datetime.now(UTC),
        )  # fmt: skip
        scheduler.start()
        log.info("daemon started")
        try:
            await self._stop.wait()
        finally:
            log.info("stopping: %d runs in flight", len(self._runs))
            scheduler.shutdown(wait=False)
            for task in list(self._runs):
                task.cancel()
            await asyncio.gather(*self._runs, return_exceptions=True)
            log.info("daemon stopped")
