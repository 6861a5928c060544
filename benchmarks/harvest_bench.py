"""Harvest benchmark: first-pass throughput, requests of later passes, peak memory.

Runs the simulator in this process and `harvester sync` as a child process (two
processes, as in production), on a fresh PostgreSQL database and a fresh SQLite file:

    .venv/bin/python benchmarks/harvest_bench.py                  # 4 gateways x 25,000
    .venv/bin/python benchmarks/harvest_bench.py --sessions 2500 --history 0   # quick

Per database it reports: the first (full) pass in sessions/s for the whole process, its
peak RSS and the CPU of the harvester, PostgreSQL and the simulator meanwhile; the list
requests per gateway of quiet passes (first with the newest page and two sessions
thousands deep open, then with only the two deep ones open), of a pass after 5 new
sessions per gateway and the running sessions finishing, and of a quiet pass once
nothing is open; and, after `--history` forgotten sessions are added to the store, the
RSS of a full pass again. A baseline child fetches and decodes every page with the same
client and no database; the first pass is reported as a ratio to it. On PostgreSQL, a
yardstick is measured in the same run, right before the first pass: a per-page
guarded upsert alone (pre-cleaned pages, one writer per gateway, a scratch database), and
the first pass is reported as a fraction of its throughput, which says more than sessions/s
on a machine whose speed varies.
"""

from __future__ import annotations

import argparse
import asyncio
import compileall
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import orjson
from sqlalchemy.engine import make_url

from harvester.api.client import ApiClient, RequestTally
from harvester.api.credentials import StaticCredentials
from harvester.api.signing import Credentials
from harvester.db import store
from harvester.normalize import normalize_page
from harvester.records import ComputeId, Gateway, WorkspaceId
from harvester.settings import load_settings
from harvester.simulator import (
    DEMO_ACCESS_KEY_ID,
    DEMO_ACCESS_KEY_SECRET,
    SimulatedService,
    serve,
)
from harvester.simulator.model import SessionsPage

REGION = "cn-hangzhou"
ROOT = Path(__file__).resolve().parent.parent
HARVESTER = [sys.executable, "-m", "harvester"]
#: positions (0 = newest) of the two long-running sessions per gateway
DEEP_POSITIONS = (2_345, 7_777)


@dataclass
class ChildRun:
    seconds: float
    peak_rss_mb: float
    #: user + system CPU of the child, and of this process (the simulator) meanwhile
    cpu_s: float
    simulator_cpu_s: float
    output: str


# A child forked from this (large) process would count our pages in its peak RSS, so
# children are started from a small launcher that reports their own peak.
_LAUNCHER = """
import resource, subprocess, sys
code = subprocess.call(sys.argv[1:])
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(f"maxrss_kb={usage.ru_maxrss} cpu_s={usage.ru_utime + usage.ru_stime}")
sys.exit(code)
"""


def run_child(command: Sequence[str], env: dict[str, str]) -> ChildRun:
    """Run a child process to the end; wall time and its own peak RSS."""
    started, simulator_started = time.perf_counter(), _own_cpu_s()
    result = subprocess.run(
        [sys.executable, "-c", _LAUNCHER, *command],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - started
    simulator_cpu_s = _own_cpu_s() - simulator_started
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout}")
    output, _, report = result.stdout.rstrip().rpartition("\n")
    fields = dict(part.split("=") for part in report.split())
    return ChildRun(
        seconds,
        int(fields["maxrss_kb"]) / 1024,
        float(fields["cpu_s"]),
        simulator_cpu_s,
        output,
    )


def _own_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def postgres_cpu_s() -> float | None:
    """CPU used so far by this machine's PostgreSQL processes (Linux); None if not local."""
    total, ticks = 0.0, os.sysconf("SC_CLK_TCK")
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            name, _, rest = stat.read_text().partition(") ")
        except OSError:
            continue
        if name.endswith("(postgres"):
            fields = rest.split()
            # Its own time and that of its exited children (backends that closed).
            total += sum(int(f) for f in fields[11:15]) / ticks
    return total or None


async def run_child_async(command: Sequence[str], env: dict[str, str]) -> ChildRun:
    """The same, off the event loop: the simulator keeps serving in this process."""
    return await asyncio.to_thread(run_child, command, env)


def requests_per_gateway(output: str) -> list[int]:
    """`requests=` of each logfmt summary line printed by `harvester sync`."""
    counts = []
    for line in output.splitlines():
        fields = dict(part.split("=", 1) for part in line.split() if "=" in part)
        if line.startswith("target=") and "requests" in fields:
            counts.append(int(fields["requests"]))
    return counts


def build_service(gateways: int, sessions: int, seed: int) -> SimulatedService:
    service = SimulatedService(seed, quirks=False)
    workspace_id = service.add_workspace()
    for _ in range(gateways):
        compute_id = service.add_gateway(workspace_id)
        service.add_sessions(workspace_id, compute_id, sessions, spread_days=60)
    # Finished everywhere, but for the newest page and two long runners deep down.
    for compute_id in service.gateway_ids(workspace_id):
        ids = service.session_ids(workspace_id, compute_id)
        for session_id in ids[100:]:
            service.finish(session_id)
        for position in DEEP_POSITIONS:
            if position < len(ids):
                service.set_state(ids[position], "running")
    return service


def finish_the_newest_page(service: SimulatedService) -> None:
    """Leave the two deep sessions as the only open ones of each gateway."""
    for workspace_id in service.workspace_ids(REGION):
        for compute_id in service.gateway_ids(workspace_id):
            for session_id in service.session_ids(workspace_id, compute_id)[:100]:
                service.finish(session_id)


def change_a_little(service: SimulatedService) -> None:
    """5 new sessions per gateway; the running ones finish, the two deep ones included."""
    for workspace_id in service.workspace_ids(REGION):
        for compute_id in service.gateway_ids(workspace_id):
            for session_id in service.session_ids(workspace_id, compute_id):
                if service.record(session_id).get("state") not in ("terminated", "error"):
                    service.finish(session_id)
            service.add_sessions(
                workspace_id, compute_id, 5, state="terminated", create_time_ms=service.now_ms
            )


async def baseline(endpoint: str, gateways: list[Gateway], page_size: int) -> None:
    """Fetch and decode every page of every gateway with the harvester's client, no DB."""
    settings = load_settings(
        None,
        {"HARVESTER_API__ENDPOINT": endpoint, "HARVESTER_API__REQUESTS_PER_SECOND": "100000"},
    )
    credentials = StaticCredentials(Credentials(DEMO_ACCESS_KEY_ID, DEMO_ACCESS_KEY_SECRET))
    async with ApiClient.open(settings.api, credentials) as client:

        async def one(gateway: Gateway) -> int:
            tally, page_num, listed = RequestTally(), 1, 0
            while True:
                page = await client.list_sessions(gateway, page_num, page_size, tally)
                listed += len(page.sessions)
                if listed >= page.total_count or not page.sessions:
                    return listed
                page_num += 1

        counts = await asyncio.gather(*(one(g) for g in gateways))
    print(f"baseline fetched {sum(counts)} sessions")


def _dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def _admin(admin_url: str, sql: str) -> None:
    conn = await asyncpg.connect(_dsn(admin_url))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def settle_postgres(admin_url: str) -> None:
    """Checkpoint first, so that one due to earlier work (an earlier run's 900,000-row
    history, say) does not land inside the measured pass. Skipped without the right."""
    try:
        await _admin(admin_url, "CHECKPOINT")
    except asyncpg.InsufficientPrivilegeError:
        print("note: no right to CHECKPOINT; a checkpoint may fall inside the first pass")


async def fresh_postgres(admin_url: str) -> tuple[str, str]:
    """A new, empty scratch database on the admin URL's server: (name, URL)."""
    name = f"harvester_bench_{uuid.uuid4().hex[:8]}"
    await _admin(admin_url, f'CREATE DATABASE "{name}"')
    return name, make_url(admin_url).set(database=name).render_as_string(hide_password=False)


async def drop_postgres(admin_url: str, name: str) -> None:
    await _admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


#: The yardstick: a per-page guarded upsert on its own, into the same table. No HTTP,
#: no cleaning, no state changes, run counters or checkpoint: only what no loader avoids.
_GUARDED_UPSERT_SQL = f"""
INSERT INTO livy_sessions AS s ({store._COLUMN_LIST}, first_seen_at, updated_at)
SELECT {", ".join(store._pg_value(name) for name, _ in store._RECORD_FIELDS)}, $2, $2
FROM unnest(CAST($1 AS {store.PAGE_ROW_TYPE}[])) AS i
ON CONFLICT (session_id) DO UPDATE SET {store._UPDATE_SET}
WHERE {store._changed("s", "excluded", operator="IS DISTINCT FROM")}
"""  # noqa: S608 (fixed text, no input)


async def guarded_upsert_alone(
    service: SimulatedService, gateways: list[Gateway], database_url: str, page_size: int
) -> tuple[float, float | None]:
    """Seconds and PostgreSQL CPU to upsert every page, pre-cleaned and pre-encoded, with one
    writer per gateway: the reference the first pass is compared with on the same machine."""
    pages = {
        gateway: [
            store._pg_rows(normalize_page(orjson.loads(b"[" + b",".join(page.fragments) + b"]"),
                                          gateway).records)
            for page in _all_pages(service, gateway, page_size)
        ]
        for gateway in gateways
    }  # fmt: skip
    connections = [await asyncpg.connect(_dsn(database_url)) for _ in gateways]
    now = datetime.now(UTC)

    async def write(conn: asyncpg.Connection, gateway: Gateway) -> None:
        for rows in pages[gateway]:
            await conn.execute(_GUARDED_UPSERT_SQL, rows, now)

    try:
        cpu_before, started = postgres_cpu_s(), time.perf_counter()
        await asyncio.gather(*(write(c, g) for c, g in zip(connections, gateways, strict=True)))
        seconds, cpu_after = time.perf_counter() - started, postgres_cpu_s()
    finally:
        for conn in connections:
            await conn.close()
    cpu = cpu_after - cpu_before if cpu_before is not None and cpu_after is not None else None
    return seconds, cpu


def _all_pages(service: SimulatedService, gateway: Gateway, page_size: int) -> list[SessionsPage]:
    pages: list[SessionsPage] = []
    page_num = 1
    while True:
        page = service.list_sessions_page(
            gateway.workspace_id, gateway.compute_id, page_num=page_num, page_size=page_size
        )
        if not page.fragments:
            return pages
        pages.append(page)
        page_num += 1


#: forgotten sessions of one gateway, all created and gone long ago
_HISTORY_SQL = {
    "postgresql": """
        INSERT INTO livy_sessions (session_id, workspace_id, compute_id, state, raw,
                                   first_seen_at, updated_at, gone_at, create_time)
        SELECT :prefix || n, :ws, :lc, 'terminated', '{}', :old, :old, :old, :old
        FROM generate_series(1, :rows) AS n""",
    "sqlite": """
        WITH RECURSIVE numbers(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM numbers WHERE n < :rows)
        INSERT INTO livy_sessions (session_id, workspace_id, compute_id, state, raw,
                                   first_seen_at, updated_at, gone_at, create_time)
        SELECT :prefix || n, :ws, :lc, 'terminated', '{}', :old, :old, :old, :old FROM numbers""",
}


async def add_history(database_url: str, rows: int) -> None:
    """Forgotten sessions (gone_at set) of the benchmark's gateways, straight into the store."""
    from sqlalchemy import bindparam, text

    from harvester.db.engine import create_engine
    from harvester.db.tables import UtcDateTime

    engine = create_engine(database_url)
    insert = text(_HISTORY_SQL[engine.dialect.name]).bindparams(
        bindparam("old", type_=UtcDateTime())
    )
    try:
        async with engine.begin() as conn:
            targets = (
                await conn.execute(text("SELECT workspace_id, compute_id FROM harvest_targets"))
            ).all()
            for workspace_id, compute_id in targets:
                await conn.execute(
                    insert,
                    {
                        "rows": rows // max(len(targets), 1),
                        "prefix": f"history-{compute_id}-",
                        "ws": workspace_id,
                        "lc": compute_id,
                        "old": datetime(2020, 1, 1, tzinfo=UTC),
                    },
                )
    finally:
        await engine.dispose()


async def reference_run(
    service: SimulatedService,
    gateways: list[Gateway],
    args: argparse.Namespace,
    env: dict[str, str],
) -> tuple[float, float | None]:
    """The guarded upsert alone, on a scratch database of its own, right before the pass."""
    name, url = await fresh_postgres(args.postgres_url)
    try:
        await run_child_async([*HARVESTER, "migrate"], {**env, "HARVESTER_DATABASE_URL": url})
        await settle_postgres(args.postgres_url)
        return await guarded_upsert_alone(service, gateways, url, args.page_size)
    finally:
        await drop_postgres(args.postgres_url, name)


async def bench_database(
    label: str, database_url: str, args: argparse.Namespace
) -> dict[str, object]:
    service = build_service(args.gateways, args.sessions, args.seed)
    workspace_id = service.workspace_ids(REGION)[0]
    gateways = [
        Gateway(REGION, WorkspaceId(workspace_id), ComputeId(c))
        for c in service.gateway_ids(workspace_id)
    ]
    total = args.gateways * args.sessions
    async with serve(service) as endpoint:
        env = {
            **os.environ,
            "HARVESTER_DATABASE_URL": database_url,
            "HARVESTER_API__ENDPOINT": endpoint,
            "HARVESTER_API__PAGE_SIZE": str(args.page_size),
            "HARVESTER_API__REQUESTS_PER_SECOND": "100000",
            "HARVESTER_API__MAX_CONCURRENCY": "16",
            "HARVESTER_HARVEST__MAX_PARALLEL_TARGETS": str(args.gateways),
            "HARVESTER_TARGETS": json.dumps([{"region_id": REGION}]),
            "HARVESTER_LOGGING__LEVEL": "WARNING",
            "ALIBABA_CLOUD_ACCESS_KEY_ID": DEMO_ACCESS_KEY_ID,
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET": DEMO_ACCESS_KEY_SECRET,
            "ALIBABA_CLOUD_ECS_METADATA_DISABLED": "true",
        }
        await run_child_async([*HARVESTER, "migrate"], env)
        base = await run_child_async(
            [sys.executable, __file__, "--baseline", endpoint, "--page-size", str(args.page_size),
             "--gateway-keys", ",".join(g.key for g in gateways)],
            env,
        )  # fmt: skip
        reference: tuple[float, float | None] | None = None
        if label == "postgresql":
            reference = await reference_run(service, gateways, args, env)
            await settle_postgres(args.postgres_url)
        postgres_before = postgres_cpu_s() if label == "postgresql" else None
        first = await run_child_async([*HARVESTER, "sync"], env)
        postgres_after = postgres_cpu_s() if label == "postgresql" else None
        busy = await run_child_async([*HARVESTER, "sync"], env)  # the newest page is open
        finish_the_newest_page(service)
        await run_child_async([*HARVESTER, "sync"], env)
        quiet = await run_child_async([*HARVESTER, "sync"], env)  # the two deep ones are open
        change_a_little(service)
        changed = await run_child_async([*HARVESTER, "sync"], env)
        settled = await run_child_async([*HARVESTER, "sync"], env)  # nothing open any more
        result: dict[str, object] = {
            "database": label,
            "sessions": total,
            "first_pass_s": round(first.seconds, 2),
            "first_pass_sessions_per_s": round(total / first.seconds),
            "first_pass_peak_rss_mb": round(first.peak_rss_mb, 1),
            # CPU is steadier than wall time on a shared machine, and shows where it goes.
            "first_pass_cpu_s_harvester": round(first.cpu_s, 2),
            "first_pass_cpu_s_database": (
                round(postgres_after - postgres_before, 2)
                if postgres_before is not None and postgres_after is not None
                else "-"
            ),
            "first_pass_cpu_s_simulator": round(first.simulator_cpu_s, 2),
            "guarded_upsert_alone_sessions_per_s": (
                round(total / reference[0]) if reference is not None else "-"
            ),
            "guarded_upsert_alone_cpu_s_database": (
                round(reference[1], 2) if reference is not None and reference[1] else "-"
            ),
            "first_pass_vs_guarded_upsert_alone": (
                round(reference[0] / first.seconds, 2) if reference is not None else "-"
            ),
            "baseline_s": round(base.seconds, 2),
            "first_pass_vs_baseline": round(first.seconds / base.seconds, 2),
            "full_pass_requests_per_gateway": max(requests_per_gateway(first.output)),
            "quiet_pass_s": round(quiet.seconds, 2),
            "quiet_pass_requests_per_gateway": max(requests_per_gateway(quiet.output)),
            "quiet_pass_requests_newest_page_open_too": max(requests_per_gateway(busy.output)),
            # What the interpreter, the libraries and the connections take on their own.
            "quiet_pass_peak_rss_mb": round(quiet.peak_rss_mb, 1),
            "changed_pass_requests_per_gateway": max(requests_per_gateway(changed.output)),
            "settled_quiet_pass_requests_per_gateway": max(requests_per_gateway(settled.output)),
        }
        if args.history:
            await add_history(database_url, args.history)
            full = await run_child_async([*HARVESTER, "sync", "--full"], env)
            result["stored_sessions_after_history"] = total + 5 * args.gateways + args.history
            result["full_pass_with_history_s"] = round(full.seconds, 2)
            result["full_pass_with_history_peak_rss_mb"] = round(full.peak_rss_mb, 1)
            quiet_again = await run_child_async([*HARVESTER, "sync"], env)
            result["quiet_pass_with_history_s"] = round(quiet_again.seconds, 2)
            result["quiet_pass_with_history_requests"] = max(
                requests_per_gateway(quiet_again.output)
            )
    return result


async def main(args: argparse.Namespace) -> None:
    results = []
    for database in args.databases.split(","):
        if database == "postgresql":
            name, url = await fresh_postgres(args.postgres_url)
            try:
                results.append(await bench_database("postgresql", url, args))
            finally:
                await drop_postgres(args.postgres_url, name)
        elif database == "sqlite":
            with tempfile.TemporaryDirectory() as directory:
                url = f"sqlite+aiosqlite:///{directory}/bench.db"
                results.append(await bench_database("sqlite", url, args))
        else:
            raise SystemExit(f"unknown database {database!r}: use postgresql and/or sqlite")
    print(f"machine: {os.cpu_count()} cores, python {sys.version.split()[0]}")
    print(
        f"{args.gateways} gateways x {args.sessions} sessions, page size {args.page_size}, "
        f"history {args.history} forgotten sessions"
    )
    keys = list(results[0])
    width = max(len(k) for k in keys)
    for key in keys[1:]:
        values = "  ".join(f"{r.get(key, '-')!s:>12}" for r in results)
        print(f"{key:<{width}}  {values}")
    print(f"{'(database)':<{width}}  " + "  ".join(f"{r['database']:>12}" for r in results))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--gateways", type=int, default=4)
    parser.add_argument("--sessions", type=int, default=25_000, help="per gateway")
    parser.add_argument("--page-size", type=int, default=100)
    parser.add_argument("--history", type=int, default=900_000, help="forgotten sessions added")
    parser.add_argument("--databases", default="postgresql,sqlite")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get(
            "HARVESTER_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
        ),
        help="a server where a scratch database may be created and dropped",
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--baseline", metavar="ENDPOINT", help=argparse.SUPPRESS)
    parser.add_argument("--gateway-keys", help=argparse.SUPPRESS)
    return parser.parse_args()


if __name__ == "__main__":
    arguments = parse_args()
    if arguments.baseline:
        keys = [key.split("/") for key in arguments.gateway_keys.split(",")]
        targets = [Gateway(REGION, WorkspaceId(w), ComputeId(c)) for w, c in keys]
        asyncio.run(baseline(arguments.baseline, targets, arguments.page_size))
    else:
        # Measure the package as installed: compiled once, not from source at every start
        # (an editable install under PYTHONDONTWRITEBYTECODE=1 would be compiled each time).
        compileall.compile_dir(ROOT / "harvester", quiet=1)
        asyncio.run(main(arguments))
