"""The daemon's status endpoint (aiohttp.web): `/healthz` for orchestrators, `/metrics`.

The health decision is a pure function (`assess_health`); the server only gathers its
inputs through a callback and renders the answer.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from harvester.errors import ConfigError
from harvester.metrics import Metrics

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class TargetHealth:
    """What the health decision needs to know about one scheduled gateway."""

    #: the last successful run by any replica (from harvest_targets), None if never
    last_success_at: datetime | None
    #: when this process started scheduling it: the grace of a target not yet run
    scheduled_since: datetime
    #: how old its last success may be
    max_age_s: float


@dataclass(frozen=True, slots=True)
class Health:
    """The answer of /healthz: ok or not, and a JSON body that says why."""

    ok: bool
    body: dict[str, Any] = field(default_factory=dict)


def assess_health(
    *, database_ok: bool, now: datetime, targets: Mapping[str, TargetHealth]
) -> Health:
    """Healthy while the database answers and every target succeeded within its window."""
    stale: list[str] = []
    for key, target in sorted(targets.items()):
        reference = target.scheduled_since
        if target.last_success_at is not None and target.last_success_at > reference:
            reference = target.last_success_at
        if (now - reference).total_seconds() > target.max_age_s:
            stale.append(key)
    ok = database_ok and not stale
    body: dict[str, Any] = {
        "status": "ok" if ok else "unhealthy",
        "database": "ok" if database_ok else "unreachable",
        "targets": len(targets),
        "stale_targets": stale,
    }
    return Health(ok=ok, body=body)


HealthCheck = Callable[[], Awaitable[Health]]


class StatusServer:
    """Serves /healthz and /metrics on [server] listen until stopped."""

    def __init__(self, host: str, port: int, check: HealthCheck, metrics: Metrics) -> None:
        self._host = host
        self._port = port
        self._check = check
        self._metrics = metrics
        self._runner: web.AppRunner | None = None
        #: the bound address, known once started (the real port when 0 was asked)
        self.url: str | None = None

    async def start(self) -> None:
        """Bind and serve; an address that cannot be bound is a configuration error."""
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/metrics", self._render_metrics)
        # No access log: an orchestrator probing every few seconds would drown the run logs.
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        try:
            await web.TCPSite(runner, self._host, self._port).start()
        except OSError as exc:
            await runner.cleanup()
            raise ConfigError(
                f"cannot listen on {self._host}:{self._port} ([server] listen): "
                f"{exc.strerror or type(exc).__name__}"
            ) from None
        self._runner = runner
        host, port = runner.addresses[0][:2]
        self.url = f"http://{f'[{host}]' if ':' in host else host}:{port}"
        log.info("serving /healthz and /metrics on %s", self.url)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _healthz(self, request: web.Request) -> web.Response:
        health = await self._check()
        return web.json_response(health.body, status=200 if health.ok else 503)

    async def _render_metrics(self, request: web.Request) -> web.Response:
        return web.Response(
            body=self._metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )
