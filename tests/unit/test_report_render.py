"""Pure parts of `status` and `report`: periods, tables, CSV/JSON, the HTML chart."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import UTC, date, datetime, timedelta
from html.parser import HTMLParser

import pytest

from harvester.chart import nice_ticks, render_html, series
from harvester.errors import ConfigError
from harvester.report import Period, Report, UsageRow, parse_instant, render, resolve_period
from harvester.status import format_duration, plain_table

NOW = datetime(2026, 11, 24, 15, 30, tzinfo=UTC)
EVIL = '<img src=x onerror="alert(1)">&'


def sample(by: str = "queue", keys: int = 3) -> Report:
    period = Period(datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 11, 8, tzinfo=UTC))
    rows = []
    for offset in range(7):
        for k in range(keys):
            key = None if k == 0 else EVIL if k == 1 else f"q{k}"
            rows.append(
                UsageRow(date(2026, 11, 1) + timedelta(days=offset), key, 2, 1.5 * k, 7200, 10)
            )
    return Report(period, by, rows)  # type: ignore[arg-type]


def test_parse_instant() -> None:
    assert parse_instant("2026-11-01") == datetime(2026, 11, 1, tzinfo=UTC)
    assert parse_instant("2026-11-01T12:00:00Z") == datetime(2026, 11, 1, 12, tzinfo=UTC)
    assert parse_instant("2026-11-01T12:00:00+08:00") == datetime(2026, 11, 1, 4, tzinfo=UTC)
    assert parse_instant("2026-11-01 12:00") == datetime(2026, 11, 1, 12, tzinfo=UTC)
    with pytest.raises(ConfigError, match="not a date"):
        parse_instant("last tuesday")


def test_resolve_period_defaults_and_order() -> None:
    period = resolve_period(None, None, NOW)
    assert period.until == datetime(2026, 11, 25, tzinfo=UTC)
    assert period.since == datetime(2026, 10, 26, tzinfo=UTC)
    assert len(period.days()) == 30
    period = resolve_period(None, "2026-11-01", NOW)
    assert period.since == datetime(2026, 10, 2, tzinfo=UTC)
    period = resolve_period("2026-11-01T06:00:00Z", "2026-11-02T06:00:00Z", NOW)
    assert period.days() == [date(2026, 11, 1), date(2026, 11, 2)]
    assert "2026-11-01 06:00:00" in period.label()
    with pytest.raises(ConfigError, match="before"):
        resolve_period("2026-11-02", "2026-11-01", NOW)


def test_nice_ticks() -> None:
    assert nice_ticks(0) == [0.0, 1.0]
    assert nice_ticks(10) == [0, 2, 4, 6, 8, 10]
    assert nice_ticks(0.37)[-1] >= 0.37
    for peak in (0.001, 3.3, 47, 999, 123456.7):
        ticks = nice_ticks(peak)
        assert ticks[0] == 0
        assert ticks[-1] >= peak
        assert len(ticks) <= 12


def test_totals_csv_and_json() -> None:
    report = sample()
    totals = report.totals()
    assert [t.key for t in totals] == ["q2", EVIL, None]
    assert totals[0].cu_hours == pytest.approx(21.0)
    rows = list(csv.reader(io.StringIO(render(report, "csv"))))
    assert rows[0] == ["queue", "sessions", "cu_hours", "vcore_seconds", "mb_seconds"]
    assert rows[1] == ["q2", "14", "21", "50400", "70"]
    assert rows[3][0] == ""  # NULL queue: an empty cell
    daily = list(csv.reader(io.StringIO(render(report, "csv", per_day=True))))
    assert daily[0][:2] == ["day", "queue"]
    assert len(daily) == 22
    document = json.loads(render(report, "json"))
    assert document["by"] == "queue"
    assert document["since"] == "2026-11-01T00:00:00+00:00"
    assert document["total"] == {
        "sessions": 42, "cu_hours": 31.5, "vcore_seconds": 21 * 7200, "mb_seconds": 210,
    }  # fmt: skip
    assert document["totals"][2]["queue"] is None
    assert len(document["daily"]) == 21


def test_table_is_aligned_and_has_a_total() -> None:
    text = render(sample(), "table")
    lines = text.splitlines()
    assert lines[0].startswith("Usage by queue, 2026-11-01 to 2026-11-08")
    assert lines[2].split() == ["queue", "sessions", "cu_hours", "vcore_hours", "mb_seconds"]
    assert lines[-1].split()[:3] == ["total", "42", "31.50"]
    assert "(none)" in text
    assert plain_table(["a", "bb"], [["xxx", "y"]]) == "a    bb\nxxx  y"


def test_format_duration() -> None:
    assert [format_duration(s) for s in (None, 5, 125, 3 * 3600 + 300, 2 * 86400 + 7200)] == [
        "never", "5s", "2m", "3h05m", "2d02h",
    ]  # fmt: skip


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_html_is_self_contained_escaped_and_has_the_chart() -> None:
    page = render_html(sample(), generated_at=NOW)
    parser = _Collector()
    parser.feed(page)
    assert "img" not in parser.tags
    assert "script" not in parser.tags
    assert EVIL in "".join(parser.text)  # shown as text, in the legend, tips and table
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;&amp;" in page
    assert not re.search(r"(src|href)=\"?(https?:)?//", page)  # nothing fetched from anywhere
    assert "<svg" in page
    assert page.count("<rect") == 14
    assert "CU-hours per day by queue, 2026-11-01 to 2026-11-08" in page
    assert "day (UTC)" in page
    assert ">CU-hours</text>" in page
    assert parser.tags.count("li") == 3  # the legend
    assert parser.tags.count("tr") == 5  # header, 3 keys, total


def test_chart_folds_small_series_into_other() -> None:
    report = sample(keys=14)
    names, values = series(report)
    assert len(names) == 10
    assert names[-1] == "other"
    day = values[date(2026, 11, 1)]
    assert sum(day.values()) == pytest.approx(sum(1.5 * k for k in range(14)))
    empty = Report(report.period, "user", [])
    assert "No sessions in this period" in render_html(empty)
