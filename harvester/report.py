"""`harvester report`: usage (sessions, CU-hours, vcore/mb-seconds) over a period, by a dimension.

One parameterised query over livy_sessions (the same day bucketing as the daily_usage view,
but filtered on create_time so the index serves any period); rendering is pure.
"""

from __future__ import annotations

import csv
import io
import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal, get_args

from sqlalchemy import ColumnElement, Date, cast, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from harvester.db.engine import create_engine
from harvester.db.tables import livy_sessions
from harvester.errors import ConfigError
from harvester.sync import check_schema

Dimension = Literal["queue", "user", "gateway", "workspace"]
Format = Literal["table", "csv", "json", "html"]
DIMENSIONS: tuple[Dimension, ...] = get_args(Dimension)
FORMATS: tuple[Format, ...] = get_args(Format)

#: the livy_sessions column behind each --by value
DIMENSION_COLUMNS: dict[Dimension, str] = {
    "queue": "queue",
    "user": "proxy_user",
    "gateway": "compute_id",
    "workspace": "workspace_id",
}
DEFAULT_PERIOD = timedelta(days=30)
#: how NULL (no queue, no proxy user) is shown to people; JSON keeps null
NONE_LABEL = "(none)"


@dataclass(frozen=True, slots=True)
class Period:
    """A half-open UTC interval [since, until)."""

    since: datetime
    until: datetime

    def days(self) -> list[date]:
        """Every UTC day the period touches, in order."""
        first, last = self.since.date(), (self.until - timedelta(microseconds=1)).date()
        return [first + timedelta(days=n) for n in range((last - first).days + 1)]

    def label(self) -> str:
        """The period for titles: dates when it is whole days, else timestamps."""

        def show(moment: datetime) -> str:
            if moment.time() == time(0):
                return moment.date().isoformat()
            return moment.strftime("%Y-%m-%d %H:%M:%S")

        return f"{show(self.since)} to {show(self.until)} (UTC, end excluded)"


def parse_instant(text: str) -> datetime:
    """A date (midnight UTC) or an ISO datetime (naive means UTC) as an aware UTC datetime."""
    value = text.strip()
    try:
        if len(value) == 10:
            return datetime.combine(date.fromisoformat(value), time(0), tzinfo=UTC)
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(
            f"{text!r} is not a date or time; use 2026-11-01 or 2026-11-01T12:00:00Z"
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def resolve_period(since: str | None, until: str | None, now: datetime) -> Period:
    """--since/--until to a period; by default the 30 days up to the end of today (UTC)."""
    end = (
        parse_instant(until)
        if until
        else datetime.combine(now.astimezone(UTC).date() + timedelta(days=1), time(0), tzinfo=UTC)
    )
    start = parse_instant(since) if since else end - DEFAULT_PERIOD
    if start >= end:
        raise ConfigError(
            f"--since ({start.isoformat()}) must be before --until ({end.isoformat()})"
        )
    return Period(start, end)


@dataclass(frozen=True, slots=True)
class UsageRow:
    """Usage of one value of the dimension on one UTC day (or over the period, for totals)."""

    day: date | None
    key: str | None
    sessions: int
    cu_hours: float
    vcore_seconds: int
    mb_seconds: int


@dataclass(frozen=True, slots=True)
class Report:
    """Daily usage rows for a period and dimension; totals are derived."""

    period: Period
    by: Dimension
    daily: list[UsageRow]

    def totals(self) -> list[UsageRow]:
        """One row per key over the whole period, largest CU-hours first."""
        sums: dict[str | None, list[float]] = defaultdict(lambda: [0, 0.0, 0, 0])
        for row in self.daily:
            acc = sums[row.key]
            acc[0] += row.sessions
            acc[1] += row.cu_hours
            acc[2] += row.vcore_seconds
            acc[3] += row.mb_seconds
        rows = [
            UsageRow(None, key, int(s), c, int(v), int(m)) for key, (s, c, v, m) in sums.items()
        ]
        return sorted(rows, key=lambda r: (-r.cu_hours, -r.sessions, r.key or ""))

    def grand_total(self) -> UsageRow:
        """All keys together."""
        rows = self.daily
        return UsageRow(
            None,
            None,
            sum(r.sessions for r in rows),
            sum(r.cu_hours for r in rows),
            sum(r.vcore_seconds for r in rows),
            sum(r.mb_seconds for r in rows),
        )


async def usage_by_day(conn: AsyncConnection, period: Period, by: Dimension) -> list[UsageRow]:
    """Sessions and resources per UTC day of create_time and per value of `by`, in `period`."""
    sessions = livy_sessions.c
    day: ColumnElement[Any]
    if conn.dialect.name == "postgresql":
        day = cast(func.timezone("UTC", sessions.create_time), Date)
    else:
        day = func.date(sessions.create_time)
    key = sessions[DIMENSION_COLUMNS[by]]
    query = (
        select(
            day.label("day"),
            key.label("key"),
            func.count().label("sessions"),
            func.sum(sessions.cu_hours).label("cu_hours"),
            func.sum(sessions.vcore_seconds).label("vcore_seconds"),
            func.sum(sessions.mb_seconds).label("mb_seconds"),
        )
        .where(sessions.create_time >= period.since, sessions.create_time < period.until)
        .group_by(day, key)
        .order_by(day, key)
    )
    return [
        UsageRow(
            day=row.day if isinstance(row.day, date) else date.fromisoformat(str(row.day)),
            key=row.key,
            sessions=int(row.sessions),
            cu_hours=float(row.cu_hours or 0),
            vcore_seconds=int(row.vcore_seconds or 0),
            mb_seconds=int(row.mb_seconds or 0),
        )
        for row in await conn.execute(query)
    ]


async def read_report(database_url: str, period: Period, by: Dimension) -> Report:
    """Open the database, check it is migrated, read the period's usage, close it."""
    engine = create_engine(database_url)
    try:
        await check_schema(engine)
        async with engine.connect() as conn:
            return Report(period, by, await usage_by_day(conn, period, by))
    finally:
        await engine.dispose()


# --- rendering (pure) ---------------------------------------------------------------------

TOTAL_HEADERS = ("sessions", "cu_hours", "vcore_hours", "mb_seconds")


def _label(key: str | None) -> str:
    return NONE_LABEL if key is None else key


def _cu(value: float) -> str:
    return f"{value:.6f}".rstrip("0").rstrip(".") if value else "0"


def table_rows(report: Report) -> list[list[str]]:
    """Cells of the totals table: one row per key, then the total."""
    rows = [
        [
            _label(r.key),
            str(r.sessions),
            f"{r.cu_hours:,.2f}",
            f"{r.vcore_seconds / 3600:,.1f}",
            f"{r.mb_seconds:,}",
        ]
        for r in report.totals()
    ]
    total = report.grand_total()
    rows.append(
        [
            "total",
            str(total.sessions),
            f"{total.cu_hours:,.2f}",
            f"{total.vcore_seconds / 3600:,.1f}",
            f"{total.mb_seconds:,}",
        ]
    )
    return rows


def table_headers(report: Report) -> list[str]:
    """Headers of the totals table."""
    return [report.by, *TOTAL_HEADERS]


def render_csv(report: Report, *, per_day: bool = False) -> str:
    """Totals per key (or per day and key) as CSV; exact numbers, empty cell for no value."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    measures = ["sessions", "cu_hours", "vcore_seconds", "mb_seconds"]
    if per_day:
        writer.writerow(["day", report.by, *measures])
        for r in report.daily:
            day = r.day.isoformat() if r.day else ""
            writer.writerow(
                [day, r.key or "", r.sessions, _cu(r.cu_hours), r.vcore_seconds, r.mb_seconds]
            )
    else:
        writer.writerow([report.by, *measures])
        for r in report.totals():
            writer.writerow(
                [r.key or "", r.sessions, _cu(r.cu_hours), r.vcore_seconds, r.mb_seconds]
            )
    return out.getvalue()


def _row_document(row: UsageRow, by: Dimension) -> dict[str, Any]:
    document: dict[str, Any] = {"day": row.day.isoformat()} if row.day else {}
    document.update(
        {
            by: row.key,
            "sessions": row.sessions,
            "cu_hours": round(row.cu_hours, 9),
            "vcore_seconds": row.vcore_seconds,
            "mb_seconds": row.mb_seconds,
        }
    )
    return document


def report_document(report: Report) -> dict[str, Any]:
    """The JSON report: period, dimension, totals per key, the grand total and daily rows."""
    total = _row_document(report.grand_total(), report.by)
    del total[report.by]
    return {
        "since": report.period.since.isoformat(),
        "until": report.period.until.isoformat(),
        "by": report.by,
        "total": total,
        "totals": [_row_document(r, report.by) for r in report.totals()],
        "daily": [_row_document(r, report.by) for r in report.daily],
    }


def render_json(report: Report) -> str:
    """The JSON report, indented, ending with a newline."""
    return json.dumps(report_document(report), indent=2, ensure_ascii=False) + "\n"


def render_table(report: Report) -> str:
    """Plain aligned totals table under a one-line title."""
    from harvester.status import plain_table

    title = f"Usage by {report.by}, {report.period.label()}"
    return f"{title}\n\n{plain_table(table_headers(report), table_rows(report))}\n"


def render(report: Report, fmt: Format, *, per_day: bool = False) -> str:
    """The report in one of the --format choices."""
    if fmt == "csv":
        return render_csv(report, per_day=per_day)
    if fmt == "json":
        return render_json(report)
    if fmt == "html":
        from harvester.chart import render_html

        return render_html(report)
    return render_table(report)


def keys_by_size(rows: Sequence[UsageRow]) -> list[str | None]:
    """Keys ordered by total CU-hours, largest first (the chart's stacking and legend order)."""
    totals: dict[str | None, float] = defaultdict(float)
    for row in rows:
        totals[row.key] += row.cu_hours
    return sorted(totals, key=lambda k: (-totals[k], k or ""))
