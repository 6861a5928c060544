"""The usage views, `status` and `report` data agree with plain SQL over the tables."""

from __future__ import annotations

import csv
import io
import json
import random
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, insert, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from harvester import report, status
from harvester.db.tables import harvest_runs, harvest_targets, livy_sessions
from harvester.db.views import daily_usage, session_durations, target_health

NOW = datetime.now(UTC).replace(microsecond=0)
GATEWAYS = [("w-a", "lc-a1"), ("w-a", "lc-a2"), ("w-b", "lc-b1")]
STATES = ["terminated", "terminated", "error", "running", "starting", "mystery"]


def make_sessions(count: int, seed: int = 11) -> list[dict[str, Any]]:
    """Varied sessions: 40 days, NULL queue/user/create_time/cost, open, ended and forgotten."""
    rnd = random.Random(seed)
    rows = []
    for n in range(count):
        workspace_id, compute_id = rnd.choice(GATEWAYS)
        state = rnd.choice(STATES)
        created = NOW - timedelta(days=rnd.uniform(0, 40)) if n % 23 else None
        ended = None
        if created is not None and state in ("terminated", "error") and n % 7:
            ended = created + timedelta(seconds=rnd.randint(1, 20000))
        rows.append(
            {
                "session_id": f"s-{n:05d}",
                "workspace_id": workspace_id,
                "compute_id": compute_id,
                "region_id": "cn-hangzhou",
                "state": state,
                "queue": rnd.choice(["root.etl", "root.adhoc", "dev", None]),
                "proxy_user": rnd.choice(["alice", "bob", "<script>x</script>", None]),
                "create_time": created,
                "end_time": ended,
                "cu_hours": None if n % 17 == 0 else Decimal(rnd.randint(0, 500000)) / 1000,
                "vcore_seconds": None if n % 19 == 0 else rnd.randint(0, 10**7),
                "mb_seconds": rnd.randint(0, 10**9),
                "raw": {},
                "first_seen_at": NOW - timedelta(days=41),
                "updated_at": NOW - timedelta(days=1),
                "gone_at": NOW - timedelta(hours=2) if n % 11 == 0 else None,
            }
        )
    return rows


async def populate(conn: AsyncConnection, sessions: int = 400) -> list[dict[str, Any]]:
    """Sessions, three targets (healthy, failing, never succeeded) and their runs."""
    rows = make_sessions(sessions)
    await conn.execute(insert(livy_sessions), rows)
    seen = NOW - timedelta(days=5)
    for (workspace_id, compute_id), success in zip(
        GATEWAYS, [NOW - timedelta(minutes=5), NOW - timedelta(hours=3), None], strict=True
    ):
        await conn.execute(
            insert(harvest_targets).values(
                workspace_id=workspace_id, compute_id=compute_id, region_id="cn-hangzhou",
                origin="configured", active=True, first_seen_at=seen, last_seen_at=seen,
                last_success_at=success,
            )
        )  # fmt: skip
    runs = [
        ("lc-a1", "failed", NOW - timedelta(hours=2), "boom: old failure"),
        ("lc-a1", "succeeded", NOW - timedelta(minutes=6), None),
        ("lc-a2", "succeeded", NOW - timedelta(hours=3, minutes=1), None),
        ("lc-a2", "failed", NOW - timedelta(minutes=30), "Throttling.User\nafter 6 attempts"),
        ("lc-b1", "failed", NOW - timedelta(minutes=1), "signature mismatch"),
        ("lc-b1", "running", NOW, None),
    ]
    for compute_id, run_status, started, error in runs:
        workspace_id = "w-b" if compute_id == "lc-b1" else "w-a"
        await conn.execute(
            insert(harvest_runs).values(
                workspace_id=workspace_id, compute_id=compute_id, region_id="cn-hangzhou",
                started_at=started, finished_at=None if run_status == "running" else started,
                status=run_status, mode="full", error=error,
            )
        )  # fmt: skip
    return rows


@pytest.fixture
async def filled(engine: AsyncEngine) -> list[dict[str, Any]]:
    async with engine.begin() as conn:
        return await populate(conn)


def close(a: object, b: object) -> bool:
    return abs(float(a or 0) - float(b or 0)) < 1e-6


async def test_daily_usage_totals_equal_livy_sessions(
    engine: AsyncEngine, filled: list[dict[str, Any]]
) -> None:
    base_sql = (
        "SELECT count(*), sum(cu_hours), sum(vcore_seconds), sum(mb_seconds) FROM livy_sessions"
    )
    view_sql = (
        "SELECT sum(sessions), sum(cu_hours), sum(vcore_seconds), sum(mb_seconds) FROM daily_usage"
    )
    async with engine.connect() as conn:
        base = (await conn.execute(text(base_sql))).one()
        view = (await conn.execute(text(view_sql))).one()
        assert int(view[0]) == int(base[0]) == len(filled)
        assert all(close(a, b) for a, b in zip(base[1:], view[1:], strict=True))
        # Sessions without a create time still count, on a NULL day.
        undated = (await conn.execute(
            select(func.sum(daily_usage.c.sessions)).where(daily_usage.c.day.is_(None))
        )).scalar_one()  # fmt: skip
        assert undated == sum(1 for r in filled if r["create_time"] is None) > 0
        # Per queue and user, NULLs included, the view groups exactly like livy_sessions.
        for column in ("queue", "proxy_user", "compute_id"):
            base_key, view_key = livy_sessions.c[column], daily_usage.c[column]
            by_base = dict((await conn.execute(
                select(base_key, func.sum(livy_sessions.c.cu_hours)).group_by(base_key)
            )).all())  # fmt: skip
            by_view = dict((await conn.execute(
                select(view_key, func.sum(daily_usage.c.cu_hours)).group_by(view_key)
            )).all())  # fmt: skip
            assert by_base.keys() == by_view.keys()
            assert all(close(by_base[k], by_view[k]) for k in by_base)
        # The day is the UTC date of create_time.
        rows = (await conn.execute(select(daily_usage.c.day, daily_usage.c.sessions))).all()
    per_day: dict[str, int] = {}
    for day, sessions in rows:
        key = str(day) if day is not None else "none"
        per_day[key] = per_day.get(key, 0) + int(sessions)
    expected: dict[str, int] = {}
    for row in filled:
        key = row["create_time"].date().isoformat() if row["create_time"] else "none"
        expected[key] = expected.get(key, 0) + 1
    assert per_day == expected


async def test_session_durations(engine: AsyncEngine, filled: list[dict[str, Any]]) -> None:
    async with engine.connect() as conn:
        rows = {r.session_id: r for r in await conn.execute(select(session_durations))}
        base_sum = (await conn.execute(text("SELECT sum(cu_hours) FROM livy_sessions"))).scalar()
        view_sum = (
            await conn.execute(text("SELECT sum(cu_hours) FROM session_durations"))
        ).scalar()
    assert len(rows) == len(filled)
    assert close(base_sum, view_sum)
    checked = {"ended": 0, "open": 0, "gone": 0, "unknown": 0}
    for source in filled:
        row = rows[source["session_id"]]
        created, ended, gone = source["create_time"], source["end_time"], source["gone_at"]
        terminal = source["state"] in ("terminated", "error")
        assert bool(row.running) == (ended is None and gone is None and not terminal)
        if created is None:
            assert row.duration_s is None
        elif ended is not None:
            assert row.duration_s == pytest.approx((ended - created).total_seconds(), abs=0.01)
            checked["ended"] += 1
        elif terminal:
            assert row.duration_s is None
            checked["unknown"] += 1
        elif gone is not None:
            assert row.duration_s == pytest.approx((gone - created).total_seconds(), abs=0.01)
            checked["gone"] += 1
        else:
            # Still open: up to now.
            assert row.duration_s == pytest.approx(
                (datetime.now(UTC) - created).total_seconds(), abs=120
            )
            checked["open"] += 1
    assert all(checked.values()), checked


async def test_target_health_and_status(engine: AsyncEngine, filled: list[dict[str, Any]]) -> None:
    async with engine.connect() as conn:
        targets = await status.target_health(conn)
        counts = dict(
            (await conn.execute(
                text("SELECT compute_id, count(*) FROM livy_sessions GROUP BY compute_id")
            )).all()
        )  # fmt: skip
        raw = (await conn.execute(select(target_health))).all()
    assert len(raw) == len(targets) == 3
    by_id = {t.compute_id: t for t in targets}
    assert {k: t.sessions_stored for k, t in by_id.items()} == counts
    assert sum(t.sessions_stored for t in targets) == len(filled)

    healthy, failing, never = by_id["lc-a1"], by_id["lc-a2"], by_id["lc-b1"]
    assert healthy.last_run_status == "succeeded"
    assert healthy.last_error == "boom: old failure"
    elapsed_s = (datetime.now(UTC) - NOW).total_seconds()  # NOW is taken at import
    assert healthy.lag_s == pytest.approx(300 + elapsed_s, abs=30)
    assert failing.last_run_status == "failed"
    assert failing.last_error == "Throttling.User\nafter 6 attempts"
    assert failing.lag_s == pytest.approx(3 * 3600 + elapsed_s, abs=30)
    assert never.last_run_status == "running"
    assert never.lag_s is None
    assert never.last_success_at is None
    assert never.last_error == "signature mismatch"

    assert [t.compute_id for t in targets if t.is_stale(3600)] == ["lc-a2", "lc-b1"]
    assert not healthy.is_stale(3600)
    assert status.any_stale(targets, 3600)
    assert [t.is_stale(4 * 3600) for t in targets] == [False, False, True]
    document = json.loads(json.dumps(status.status_document(targets, 3600)))
    assert [t["sessions_stored"] for t in document["targets"]] == [
        counts[t.compute_id] for t in targets
    ]
    assert [t["stale"] for t in document["targets"]] == [False, True, True]
    rows = status.status_rows(targets, 3600)
    assert rows[2][4] == "never STALE"
    assert "Throttling.User after 6 attempts" in rows[1][6]


@pytest.mark.parametrize("by", report.DIMENSIONS)
async def test_report_agrees_with_sql(
    engine: AsyncEngine, filled: list[dict[str, Any]], by: report.Dimension
) -> None:
    period = report.resolve_period("2000-01-01", None, NOW)  # everything dated
    recent = report.resolve_period(None, None, NOW)  # the default: last 30 days
    assert recent.until - recent.since == timedelta(days=30)
    column = report.DIMENSION_COLUMNS[by]
    for chosen in (period, recent):
        async with engine.connect() as conn:
            data = report.Report(chosen, by, await report.usage_by_day(conn, chosen, by))
            expected = {
                key: (int(n), float(cu or 0), int(v or 0), int(m or 0))
                for key, n, cu, v, m in await conn.execute(
                    select(
                        livy_sessions.c[column], func.count(), func.sum(livy_sessions.c.cu_hours),
                        func.sum(livy_sessions.c.vcore_seconds),
                        func.sum(livy_sessions.c.mb_seconds),
                    )
                    .where(
                        livy_sessions.c.create_time >= chosen.since,
                        livy_sessions.c.create_time < chosen.until,
                    )
                    .group_by(livy_sessions.c[column])
                )
            }  # fmt: skip
        in_period = [
            r for r in filled
            if r["create_time"] is not None and chosen.since <= r["create_time"] < chosen.until
        ]  # fmt: skip
        assert sum(n for n, *_ in expected.values()) == len(in_period) > 0

        parsed_csv = {
            (row[by] or None): row for row in csv.DictReader(io.StringIO(report.render_csv(data)))
        }
        document = json.loads(report.render_json(data))
        parsed_json = {row[by]: row for row in document["totals"]}
        assert parsed_csv.keys() == parsed_json.keys() == expected.keys()
        for key, (sessions, cu_hours, vcore, mb) in expected.items():
            for row in (parsed_csv[key], parsed_json[key]):
                assert int(row["sessions"]) == sessions
                assert float(row["cu_hours"]) == pytest.approx(cu_hours, abs=1e-6)
                assert int(row["vcore_seconds"]) == vcore
                assert int(row["mb_seconds"]) == mb
        assert document["total"]["sessions"] == len(in_period)
        daily = list(csv.DictReader(io.StringIO(report.render_csv(data, per_day=True))))
        assert sum(int(r["sessions"]) for r in daily) == len(in_period)
        assert {date.fromisoformat(r["day"]) for r in daily} <= set(chosen.days())
        assert len(document["daily"]) == len(daily)
