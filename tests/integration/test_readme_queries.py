"""Every example query of the README's "Querying" section runs, and finds something."""

from __future__ import annotations

import re
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, text
from sqlalchemy.ext.asyncio import AsyncEngine

from harvester.db.tables import harvest_runs, harvest_targets, livy_sessions, session_state_changes

README = Path(__file__).parents[2] / "README.md"
NOW = datetime.now(UTC)


def readme_queries() -> dict[str, list[str]]:
    """The SQL blocks of the Querying section, by the dialects they are written for."""
    text_ = README.read_text()
    section = text_[text_.index("\n## Querying") :]
    section = section[: section.index("\n## ", 1)]
    found: dict[str, list[str]] = {"postgresql": [], "sqlite": []}
    for block in re.findall(r"```sql\n(.*?)```", section, flags=re.DOTALL):
        first = block.splitlines()[0].strip()
        if first == "-- SQLite":
            found["sqlite"].append(block)
        elif first == "-- PostgreSQL and SQLite":
            found["sqlite"].append(block)
            found["postgresql"].append(block)
        else:
            found["postgresql"].append(block)
    return found


def test_ten_questions_in_both_dialects() -> None:
    queries = readme_queries()
    assert len(queries["postgresql"]) == len(queries["sqlite"]) == 10


async def _fill(engine: AsyncEngine) -> None:
    """Two and a half months of sessions, with state histories, open and forgotten ones."""
    sessions: list[dict[str, Any]] = []
    changes: list[dict[str, Any]] = []
    today = datetime.combine(NOW.date(), time(12), tzinfo=UTC)
    for days_ago in range(75):
        for n, state in enumerate(("terminated", "error", "terminated")):
            created = today - timedelta(days=days_ago, hours=n)
            ended = created + timedelta(minutes=30)
            if ended > NOW:
                created, ended = created - timedelta(days=1), ended - timedelta(days=1)
            session_id = f"s-{days_ago}-{n}"
            sessions.append(
                {
                    "session_id": session_id, "workspace_id": "w-1",
                    "compute_id": f"lc-{n % 2}", "state": state,
                    "queue": ["etl", None, "adhoc"][n], "proxy_user": ["alice", "bob", None][n],
                    "create_time": created, "end_time": ended,
                    "cu_hours": Decimal("1.25") * (n + 1), "vcore_seconds": 3600,
                    "mb_seconds": 10**6, "raw": {}, "first_seen_at": created,
                    "updated_at": ended, "gone_at": NOW if days_ago > 60 else None,
                }
            )  # fmt: skip
            for before, after, at in (
                (None, "starting", created + timedelta(seconds=5)),
                ("starting", "running", created + timedelta(seconds=65)),
                ("running", state, ended),
            ):
                changes.append(
                    {"session_id": session_id, "from_state": before, "to_state": after,
                     "observed_at": at}
                )  # fmt: skip
    for n in range(2):  # still open, for five hours
        sessions.append(
            {
                "session_id": f"open-{n}", "workspace_id": "w-1", "compute_id": "lc-0",
                "state": "running", "queue": "etl", "proxy_user": "carol",
                "create_time": NOW - timedelta(hours=5), "end_time": None, "cu_hours": None,
                "vcore_seconds": None, "mb_seconds": None, "raw": {}, "first_seen_at": NOW,
                "updated_at": NOW, "gone_at": None,
            }
        )  # fmt: skip
    async with engine.begin() as conn:
        await conn.execute(insert(livy_sessions), sessions)
        await conn.execute(insert(session_state_changes), changes)
        for compute_id, success in (("lc-0", NOW - timedelta(hours=2)), ("lc-1", NOW)):
            await conn.execute(
                insert(harvest_targets).values(
                    workspace_id="w-1", compute_id=compute_id, region_id="cn-hangzhou",
                    origin="configured", first_seen_at=NOW, last_seen_at=NOW,
                    last_success_at=success,
                )
            )  # fmt: skip
            await conn.execute(
                insert(harvest_runs).values(
                    workspace_id="w-1", compute_id=compute_id, started_at=NOW,
                    status="failed" if compute_id == "lc-0" else "succeeded", mode="full",
                    error="Throttling" if compute_id == "lc-0" else None,
                )
            )  # fmt: skip


@pytest.mark.parametrize("index", range(10))
async def test_readme_query_runs_and_answers(
    engine: AsyncEngine, database_url: str, index: int
) -> None:
    await _fill(engine)
    dialect = "postgresql" if database_url.startswith("postgresql") else "sqlite"
    sql = readme_queries()[dialect][index]
    async with engine.connect() as conn:
        rows = (await conn.execute(text(sql))).all()
    assert rows, f"no rows from:\n{sql}"
