"""EXPLAIN ANALYZE the usage views and the common filters on 1,000,000 synthetic sessions.

Creates a scratch PostgreSQL database, migrates it, fills it with INSERT ... SELECT
generate_series, runs each query under EXPLAIN (ANALYZE, BUFFERS), prints the plans and a
one-line summary per query, then drops the database.

    .venv/bin/python benchmarks/explain_views.py [--rows 1000000] [--admin-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import time

import asyncpg
from sqlalchemy.engine import make_url

from harvester.db import migrate
from harvester.db.engine import create_engine

ADMIN_URL = os.environ.get(
    "HARVESTER_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
)

FILL = """
INSERT INTO livy_sessions (session_id, workspace_id, compute_id, region_id, name, state,
    proxy_user, queue, create_time, end_time, cu_hours, vcore_seconds, mb_seconds, raw,
    first_seen_at, updated_at, gone_at)
SELECT 'sess-' || n,
       'w-' || (n % 4),
       'lc-' || (n % 4) || '-' || (n % 5),
       'cn-hangzhou',
       'job ' || n,
       CASE WHEN n % 1000 = 0 THEN 'running' WHEN n % 50 = 0 THEN 'error' ELSE 'terminated' END,
       CASE WHEN n % 97 = 0 THEN NULL ELSE 'user' || (n % 200) END,
       CASE WHEN n % 89 = 0 THEN NULL ELSE 'root.q' || (n % 20) END,
       -- one session every ~30 s over the last year, newest first
       now() - (n * interval '31 seconds'),
       CASE WHEN n % 1000 = 0 THEN NULL
            ELSE now() - (n * interval '31 seconds') + ((n % 3600) * interval '1 second') END,
       (n % 1000) / 100.0,
       (n % 1000) * 36,
       (n % 1000) * 36 * 4096,
       '{}'::jsonb,
       now() - interval '1 year', now(),
       CASE WHEN n % 5 = 0 AND n > 200000 THEN now() - interval '1 day' END
FROM generate_series(1, $1::int) AS n
"""

TARGETS = """
INSERT INTO harvest_targets (workspace_id, compute_id, region_id, origin, active,
    first_seen_at, last_seen_at, last_success_at)
SELECT 'w-' || w, 'lc-' || w || '-' || g, 'cn-hangzhou', 'configured', true,
       now() - interval '1 year', now(), now() - (w * g) * interval '1 minute'
FROM generate_series(0, 3) AS w, generate_series(0, 4) AS g
"""

# Every target harvested every 5 minutes for a year: ~2M runs, 1 % failed.
RUNS = """
INSERT INTO harvest_runs (workspace_id, compute_id, region_id, started_at, finished_at,
    status, mode, error)
SELECT 'w-' || w, 'lc-' || w || '-' || g, 'cn-hangzhou',
       now() - n * interval '5 minutes', now() - n * interval '5 minutes' + interval '3 seconds',
       CASE WHEN n % 100 = 7 THEN 'failed' ELSE 'succeeded' END, 'full',
       CASE WHEN n % 100 = 7 THEN 'Throttling.User' END
FROM generate_series(0, 3) AS w, generate_series(0, 4) AS g, generate_series(1, $1::int) AS n
"""

QUERIES = {
    "report: 30 days by day and queue (livy_sessions, create_time range)": """
        SELECT CAST(timezone('UTC', create_time) AS date) AS day, queue, count(*),
               sum(cu_hours), sum(vcore_seconds), sum(mb_seconds)
        FROM livy_sessions
        WHERE create_time >= now() - interval '30 days' AND create_time < now()
        GROUP BY 1, 2 ORDER BY 1, 2""",
    "daily_usage: last 30 days (filter on the view's day)": """
        SELECT day, queue, sum(cu_hours) FROM daily_usage
        WHERE day >= current_date - 30 GROUP BY 1, 2""",
    "daily_usage: CU-hours per queue per month, whole history": """
        SELECT date_trunc('month', day) AS month, queue, sum(cu_hours)
        FROM daily_usage GROUP BY 1, 2""",
    "failed sessions last 7 days (state + time)": """
        SELECT count(*) FROM livy_sessions
        WHERE state = 'error' AND create_time >= now() - interval '7 days'""",
    "one queue, last 30 days": """
        SELECT sum(cu_hours) FROM livy_sessions
        WHERE queue = 'root.q3' AND create_time >= now() - interval '30 days'""",
    "one user, last 30 days": """
        SELECT sum(cu_hours) FROM livy_sessions
        WHERE proxy_user = 'user42' AND create_time >= now() - interval '30 days'""",
    "one gateway, last 7 days": """
        SELECT count(*), sum(cu_hours) FROM livy_sessions
        WHERE workspace_id = 'w-1' AND compute_id = 'lc-1-1'
          AND create_time >= now() - interval '7 days'""",
    "session_durations: open sessions running > 1 h": """
        SELECT session_id, duration_s FROM session_durations
        WHERE running AND duration_s > 3600 ORDER BY duration_s DESC LIMIT 20""",
    "forgotten sessions (gone_at IS NOT NULL), newest 20": """
        SELECT session_id, gone_at FROM livy_sessions
        WHERE gone_at IS NOT NULL ORDER BY gone_at DESC LIMIT 20""",
    "target_health (20 targets, ~2M runs)": "SELECT * FROM target_health",
}


def _dsn(url: str, database: str | None = None) -> str:
    parsed = make_url(url).set(drivername="postgresql")
    if database is not None:
        parsed = parsed.set(database=database)
    return parsed.render_as_string(hide_password=False)


def _summary(plan: str) -> str:
    """Scan nodes used and the execution time, on one line."""
    node = (
        r"((?:Parallel )?(?:Seq|Index Only|Index|Bitmap Heap|Bitmap Index) Scan"
        r"(?: Backward)?(?: using \w+)?(?: on \w+)?)"
    )
    scans = sorted(set(re.findall(node, plan)))
    timing = re.search(r"Execution Time: ([\d.]+) ms", plan)
    return f"{timing.group(1) if timing else '?'} ms; " + "; ".join(scans)


async def main(rows: int, admin_url: str) -> None:
    name = f"harvester_explain_{os.getpid()}"
    admin = await asyncpg.connect(_dsn(admin_url), timeout=10)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
        engine = create_engine(url)
        async with engine.begin() as conn:
            await migrate.upgrade(conn)
        await engine.dispose()
        db = await asyncpg.connect(_dsn(admin_url, name), timeout=10)
        try:
            started = time.monotonic()
            await db.execute(FILL, rows)
            await db.execute(TARGETS)
            await db.execute(RUNS, 105_000)
            # What autovacuum does in steady state: statistics and the visibility map (which
            # lets counts be answered from the index alone).
            await db.execute("VACUUM ANALYZE")
            print(f"filled {rows:,} sessions and ~2.1M runs in {time.monotonic() - started:.0f} s")
            summaries = []
            for title, sql in QUERIES.items():
                plan = "\n".join(r[0] for r in await db.fetch(f"EXPLAIN (ANALYZE, BUFFERS) {sql}"))
                print(f"\n=== {title}\n{sql.strip()}\n\n{plan}")
                summaries.append(f"- {title}: {_summary(plan)}")
            print("\nSummary\n" + "\n".join(summaries))
        finally:
            await db.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--admin-url", default=ADMIN_URL)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.rows, arguments.admin_url))
