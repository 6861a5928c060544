"""`harvester status` and `harvester report` as subprocesses: exit statuses and outputs."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from simkit import inherited_env
from sqlalchemy import insert

from harvester.db.engine import create_engine
from harvester.db.tables import harvest_targets, livy_sessions

HARVESTER = [sys.executable, "-m", "harvester"]


def run(args: list[str], database_url: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**inherited_env(), "HARVESTER_DATABASE_URL": database_url}
    return subprocess.run(
        HARVESTER + args, env=env, cwd=cwd, capture_output=True, text=True, timeout=60,
        check=False,
    )  # fmt: skip


async def _fill(database_url: str) -> None:
    now = datetime.now(UTC)
    engine = create_engine(database_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                insert(livy_sessions),
                [
                    {
                        "session_id": f"s{n}", "workspace_id": "w-1",
                        "compute_id": "lc-fresh" if n % 2 else "lc-stale",
                        "queue": ["etl", "adhoc", None][n % 3], "proxy_user": "alice",
                        "create_time": now - timedelta(days=n % 5, hours=1),
                        "cu_hours": Decimal(n) / 4, "vcore_seconds": n * 100,
                        "mb_seconds": n * 1000, "raw": {}, "first_seen_at": now,
                        "updated_at": now,
                    }
                    for n in range(20)
                ],
            )  # fmt: skip
            for compute_id, lag in (("lc-fresh", timedelta(minutes=2)), ("lc-stale", None)):
                await conn.execute(
                    insert(harvest_targets).values(
                        workspace_id="w-1", compute_id=compute_id, region_id="cn-hangzhou",
                        origin="configured", first_seen_at=now, last_seen_at=now,
                        last_success_at=now - lag if lag else None,
                    )
                )  # fmt: skip
    finally:
        await engine.dispose()


@pytest.fixture
async def filled_url(database_url: str) -> str:
    await _fill(database_url)
    return database_url


def test_status_exit_statuses_and_json(filled_url: str, tmp_path: Path) -> None:
    result = run(["status"], filled_url, tmp_path)
    assert result.returncode == 1, result.stderr  # lc-stale never succeeded
    lines = result.stdout.splitlines()
    assert lines[0].split()[:3] == ["target", "active", "last"]
    assert any("w-1/lc-stale" in line and "never STALE" in line for line in lines)
    result = run(["status", "--json"], filled_url, tmp_path)
    assert result.returncode == 1
    targets = json.loads(result.stdout)["targets"]
    assert [(t["compute_id"], t["stale"], t["sessions_stored"]) for t in targets] == [
        ("lc-fresh", False, 10), ("lc-stale", True, 10),
    ]  # fmt: skip
    # Deactivate the target that never succeeded: nothing active is stale any more.
    if filled_url.startswith("sqlite"):
        import sqlite3

        with sqlite3.connect(filled_url.removeprefix("sqlite+aiosqlite:///")) as db:
            db.execute("UPDATE harvest_targets SET active = 0 WHERE compute_id = 'lc-stale'")
        db.close()
        assert run(["status", "--max-lag", "10m"], filled_url, tmp_path).returncode == 0
        assert run(["status", "--max-lag", "1m"], filled_url, tmp_path).returncode == 1
    result = run(["status", "--max-lag", "soon"], filled_url, tmp_path)
    assert result.returncode == 2
    assert "not a duration" in result.stderr


def test_report_formats(filled_url: str, tmp_path: Path) -> None:
    result = run(["report", "--by", "queue", "--format", "csv"], filled_url, tmp_path)
    assert result.returncode == 0, result.stderr
    rows = {r["queue"]: r for r in csv.DictReader(io.StringIO(result.stdout))}
    assert rows.keys() == {"etl", "adhoc", ""}
    assert sum(int(r["sessions"]) for r in rows.values()) == 20
    assert sum(float(r["cu_hours"]) for r in rows.values()) == pytest.approx(sum(range(20)) / 4)
    result = run(["report", "--by", "gateway", "--format", "json"], filled_url, tmp_path)
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert {t["gateway"]: t["sessions"] for t in document["totals"]} == {
        "lc-fresh": 10, "lc-stale": 10,
    }  # fmt: skip
    page = tmp_path / "report.html"
    result = run(["report", "--format", "html", "--output", str(page)], filled_url, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "<svg" in page.read_text()
    assert "<rect" in page.read_text()
    result = run(["report"], filled_url, tmp_path)
    assert result.returncode == 0
    assert result.stdout.splitlines()[-1].split()[:2] == ["total", "20"]
    result = run(["report", "--since", "yesterday-ish"], filled_url, tmp_path)
    assert result.returncode == 2
    assert "not a date" in result.stderr


def test_unmigrated_database_exits_2(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"
    for command in (["status"], ["report"]):
        result = run(command, url, tmp_path)
        assert result.returncode == 2
        assert "harvester migrate" in result.stderr
        assert "Traceback" not in result.stderr
