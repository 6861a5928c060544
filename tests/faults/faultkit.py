"""Helpers shared by the fault suite: a small simulated service, settings with short
timeouts, the exact-store comparison, ledger consistency checks and a TCP proxy that can
make PostgreSQL unreachable without touching the shared server."""

from __future__ import annotations

import asyncio
import contextlib
import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import asyncpg
import simkit
from simkit import listed
from sqlalchemy import select
from sqlalchemy.engine import make_url

from harvester.db.engine import create_engine
from harvester.db.tables import harvest_runs, harvest_targets, livy_sessions, session_state_changes
from harvester.settings import Settings
from harvester.simulator import SimulatedService

#: every fault the issue lists, as the simulator names them
API_FAULTS = (
    "http_500", "http_502_html", "http_503", "throttle_400", "throttle_429", "slow",
    "disconnect", "disconnect_mid_body", "truncated_json", "malformed_json", "empty_page",
    "error_code_200", "error_body_200",
)  # fmt: skip

FAST_ENV = {
    "HARVESTER_API__REQUESTS_PER_SECOND": "1000",
    "HARVESTER_API__READ_TIMEOUT": "0.5",
    "HARVESTER_API__CONNECT_TIMEOUT": "1",
    "HARVESTER_API__MAX_ATTEMPTS": "10",
    "HARVESTER_API__RETRY_BUDGET": "30",
    "HARVESTER_API__PAGE_SIZE": "25",
}


def make_service(seed: int, sessions_per_gateway: int = 60) -> SimulatedService:
    """2 workspaces x 2 gateways of quirky sessions plus an empty gateway; fast faults."""
    service = SimulatedService.generate(
        seed, workspaces=2, gateways_per_workspace=2, sessions_per_gateway=sessions_per_gateway
    )
    service.faults.slow_s = 1.0  # past the 0.5 s read timeout of FAST_ENV
    service.faults.retry_after_ms = 150
    return service


def cli_env(endpoint: str, database_url: str, **extra: str) -> dict[str, str]:
    """The environment of a `harvester` subprocess: demo credentials, short timeouts."""
    return simkit.cli_env(
        **{
            **FAST_ENV,
            "HARVESTER_API__ENDPOINT": endpoint,
            "HARVESTER_DATABASE_URL": database_url,
            **extra,
        }
    )


def settings_for(database_url: str, endpoint: str, **env: str) -> Settings:
    """Settings with short timeouts and budgets, harvesting the whole region."""
    return simkit.settings_for(database_url, endpoint, **{**FAST_ENV, **env})


def _time(value: Any) -> datetime | None:
    if value in (None, 0, "0"):
        return None
    return datetime.fromtimestamp(int(float(value)) / 1000, UTC)


def _number(value: Any) -> Decimal | None:
    return None if value is None else Decimal(str(value)).normalize()


async def assert_store_exact(service: SimulatedService, database_url: str) -> None:
    """The store holds exactly the sessions the API lists, with the key fields as sent."""
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            rows = {r.session_id: r for r in (await conn.execute(select(livy_sessions))).all()}
    finally:
        await engine.dispose()
    api = listed(service)
    assert set(rows) == set(api), (len(rows), len(api))
    mismatches = []
    for session_id, (workspace_id, compute_id, raw) in api.items():
        row = rows[session_id]
        expected = {
            "workspace_id": workspace_id,
            "compute_id": raw.get("computeId") or compute_id,
            "state": raw.get("state"),
            "name": raw.get("name"),
            "create_time": _time(raw.get("createTime")),
            "end_time": _time(raw.get("endTime")),
            "cu_hours": _number(raw.get("cuHours")),
            "vcore_seconds": None if raw.get("vcoreSeconds") is None else int(raw["vcoreSeconds"]),
            "mb_seconds": None if raw.get("mbSeconds") is None else int(raw["mbSeconds"]),
            "raw": raw,
        }
        actual = {key: getattr(row, key) for key in expected}
        actual["cu_hours"] = _number(actual["cu_hours"])
        if actual != expected:
            mismatches.append((session_id, actual, expected))
    assert mismatches == []


async def assert_ledger_consistent(database_url: str, *, first_pass: bool = False) -> None:
    """No run left `running`; counters agree with the rows; every checkpoint is valid JSON.

    `first_pass`: every stored session was inserted by exactly one committed page, so the
    runs' inserted counters and the first-sight state changes both equal the row count.
    """
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            runs = (await conn.execute(select(harvest_runs))).all()
            sessions = (await conn.execute(select(livy_sessions.c.session_id))).all()
            changes = (await conn.execute(select(session_state_changes))).all()
            targets = (await conn.execute(select(harvest_targets))).all()
    finally:
        await engine.dispose()
    assert [r.id for r in runs if r.status == "running"] == []
    assert {r.status for r in runs} <= {"succeeded", "failed", "interrupted"}
    for run in runs:
        assert run.finished_at is not None
        seen = run.sessions_inserted + run.sessions_updated + run.sessions_unchanged
        assert seen == run.sessions_seen, run
        assert run.requests >= run.pages, run
    first_sight = [c for c in changes if c.from_state is None]
    assert len({c.session_id for c in first_sight}) == len(first_sight)  # one first sight each
    assert len(first_sight) == len(sessions)
    # No foreign key enforces it (revision 0005): the page statement does.
    assert {c.session_id for c in changes} <= {s.session_id for s in sessions}
    if first_pass:
        assert sum(r.sessions_inserted for r in runs) == len(sessions)
    for target in targets:
        checkpoint = target.checkpoint
        if isinstance(checkpoint, str):
            checkpoint = json.loads(checkpoint)
        assert checkpoint is None or isinstance(checkpoint, dict)
        if checkpoint:
            assert {"run_id", "page_num", "page_size", "total_count"} <= set(checkpoint)


def postgres_dsn(url: str) -> str:
    """An asyncpg DSN for a SQLAlchemy PostgreSQL URL."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def terminate_backends(database_url: str) -> int:
    """Kill every other connection to this test's own database (never anyone else's)."""
    url = make_url(database_url)
    conn = await asyncpg.connect(postgres_dsn(str(url.set(database="postgres"))), timeout=5)
    try:
        killed = await conn.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = $1 AND pid <> pg_backend_pid()",
            url.database,
        )
    finally:
        await conn.close()
    return int(killed or 0)


class TcpProxy:
    """A loopback TCP proxy to PostgreSQL that a test can take down and bring back."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._links: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        """Listen (again, on the same port once one was chosen)."""
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Refuse new connections and cut the open ones: the database is unreachable."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        self.cut()

    def cut(self) -> None:
        """Drop every open connection abruptly."""
        for writer in list(self._writers):
            with contextlib.suppress(Exception):
                writer.transport.abort()
        self._writers.clear()

    async def close(self) -> None:
        await self.stop()
        for task in list(self._links):
            task.cancel()
        await asyncio.gather(*self._links, return_exceptions=True)

    def url_for(self, database_url: str) -> str:
        """The same database URL, routed through the proxy."""
        url = make_url(database_url).set(host="127.0.0.1", port=self.port)
        return url.render_as_string(hide_password=False)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, up_writer))
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(source, sink))
            self._links.add(task)
            task.add_done_callback(self._links.discard)

    async def _pipe(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            self._writers.discard(sink)
            with contextlib.suppress(Exception):
                sink.transport.abort()
