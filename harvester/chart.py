"""The HTML report: one self-contained file, an inline SVG stacked bar chart and a table.

No scripts, no external CSS or fonts, so it opens offline and in a mail attachment. Every
data value (queue and user names are untrusted) goes through html.escape.
"""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import UTC, date, datetime
from html import escape

from harvester.report import NONE_LABEL, Report, keys_by_size, table_headers, table_rows

#: Tableau 10; the last (grey) is for "other"
PALETTE = (
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f",
    "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac",
)  # fmt: skip
MAX_SERIES = len(PALETTE) - 1
OTHER = "other"

WIDTH, HEIGHT = 1100, 420
LEFT, RIGHT, TOP, BOTTOM = 80, 20, 20, 60


def nice_ticks(maximum: float, count: int = 5) -> list[float]:
    """Round tick values from 0 to at least `maximum` (1, 2, 2.5 or 5 times a power of ten)."""
    if maximum <= 0:
        return [0.0, 1.0]
    raw = maximum / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    top = math.ceil(maximum / step - 1e-9) * step
    return [round(i * step, 10) for i in range(round(top / step) + 1)]


def _number(value: float) -> str:
    if value == int(value):
        return f"{int(value):,}"
    return f"{value:,.2f}".rstrip("0").rstrip(".")


def series(report: Report) -> tuple[list[str], dict[date, dict[str, float]]]:
    """Series names (largest first; beyond the palette folded into "other") and CU-hours per day."""
    keys = keys_by_size(report.daily)
    shown = keys if len(keys) <= MAX_SERIES + 1 else keys[:MAX_SERIES]
    names = {key: NONE_LABEL if key is None else key for key in shown}
    values: dict[date, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for row in report.daily:
        if row.day is not None:
            values[row.day][names.get(row.key, OTHER)] += row.cu_hours
    ordered = list(names.values()) + ([OTHER] if len(shown) < len(keys) else [])
    return ordered, values


def render_svg(report: Report) -> str:
    """The stacked bar chart of CU-hours per day, as an <svg> element."""
    names, values = series(report)
    colors = {name: PALETTE[i] if name != OTHER else PALETTE[-1] for i, name in enumerate(names)}
    days = report.period.days()
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    peak = max((sum(values[d].values()) for d in days if d in values), default=0.0)
    ticks = nice_ticks(peak)
    scale = plot_h / ticks[-1]
    slot = plot_w / max(len(days), 1)
    bar = max(slot * 0.8, 1.0)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="CU-hours per day">',
    ]
    for tick in ticks:
        y = TOP + plot_h - tick * scale
        parts.append(
            f'<line x1="{LEFT}" y1="{y:.1f}" x2="{WIDTH - RIGHT}" y2="{y:.1f}" class="grid"/>'
            f'<text x="{LEFT - 8}" y="{y + 4:.1f}" text-anchor="end">{_number(tick)}</text>'
        )
    every = max(1, math.ceil(len(days) / 15))
    for i, day in enumerate(days):
        x = LEFT + i * slot + (slot - bar) / 2
        y = TOP + plot_h
        for name in names:
            amount = values.get(day, {}).get(name, 0.0)
            if amount <= 0:
                continue
            height = amount * scale
            y -= height
            tip = f"{day.isoformat()} · {name}: {_number(amount)} CU-hours"
            parts.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{height:.1f}" '
                f'fill="{colors[name]}"><title>{escape(tip)}</title></rect>'
            )
        if i % every == 0:
            parts.append(
                f'<text x="{LEFT + i * slot + slot / 2:.1f}" y="{TOP + plot_h + 18}" '
                f'text-anchor="middle">{day.strftime("%m-%d")}</text>'
            )
    parts.append(
        f'<line x1="{LEFT}" y1="{TOP + plot_h}" x2="{WIDTH - RIGHT}" y2="{TOP + plot_h}" '
        f'class="axis"/><line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{TOP + plot_h}" class="axis"/>'
        f'<text x="{LEFT + plot_w / 2:.0f}" y="{HEIGHT - 12}" text-anchor="middle" class="label">'
        f"day (UTC)</text>"
        f'<text transform="translate(18 {TOP + plot_h / 2:.0f}) rotate(-90)" text-anchor="middle" '
        f'class="label">CU-hours</text>'
    )
    if peak == 0:
        parts.append(
            f'<text x="{LEFT + plot_w / 2:.0f}" y="{TOP + plot_h / 2:.0f}" text-anchor="middle" '
            f'class="label">No sessions in this period</text>'
        )
    parts.append("</svg>")
    legend = "".join(
        f'<li><span class="swatch" style="background:{colors[name]}"></span>{escape(name)}</li>'
        for name in names
    )
    return "\n".join(parts) + f'\n<ul class="legend">{legend}</ul>'


STYLE = """
body { font: 14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px; color: #222; }
h1 { font-size: 20px; margin: 0 0 4px; } p.meta { color: #666; margin: 0 0 16px; }
svg text { font-size: 12px; fill: #444; } svg .label { font-size: 13px; fill: #222; }
svg .grid { stroke: #e5e5e5; } svg .axis { stroke: #888; }
ul.legend { list-style: none; padding: 0; margin: 8px 0 24px 80px; display: flex;
  flex-wrap: wrap; gap: 6px 18px; }
.swatch { display: inline-block; width: 12px; height: 12px; margin-right: 6px;
  vertical-align: -1px; }
table { border-collapse: collapse; min-width: 600px; }
th, td { padding: 4px 12px; border-bottom: 1px solid #e5e5e5; text-align: right; }
th:first-child, td:first-child { text-align: left; }
tr:last-child td { font-weight: 600; border-top: 2px solid #888; }
"""


def render_html(report: Report, generated_at: datetime | None = None) -> str:
    """The whole report page: title with the period, the chart, the legend, the totals table."""
    generated = (generated_at or datetime.now(UTC)).strftime("%Y-%m-%d %H:%M UTC")
    title = f"CU-hours per day by {report.by}, {report.period.label()}"
    head = "".join(f"<th>{escape(h)}</th>" for h in table_headers(report))
    body = "\n".join(
        "<tr>" + "".join(f"<td>{escape(cell)}</td>" for cell in row) + "</tr>"
        for row in table_rows(report)
    )
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{escape(title)}</title>
<style>{STYLE}</style>
</head>
<body>
<h1>{escape(title)}</h1>
<p class="meta">Generated by harvester at {generated}. Sessions are counted on the UTC day
they were created.</p>
{render_svg(report)}
<table>
<thead><tr>{head}</tr></thead>
<tbody>
{body}
</tbody>
</table>
</body>
</html>
"""
