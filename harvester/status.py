"""`harvester status`: is every target harvested recently? Read from the target_health view.

Fetching is one query; judging staleness and rendering are pure functions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from harvester.db.engine import create_engine
from harvester.db.views import target_health as health_view
from harvester.sync import check_schema


@dataclass(frozen=True, slots=True)
class TargetHealth:
    """One row of target_health: a gateway's last run, last success, lag and stored count."""

    workspace_id: str
    compute_id: str
    region_id: str | None
    name: str | None
    origin: str | None
    active: bool
    last_run_id: int | None
    last_run_status: str | None
    last_run_started_at: datetime | None
    last_run_finished_at: datetime | None
    last_success_at: datetime | None
    last_full_pass_at: datetime | None
    lag_s: float | None
    last_error: str | None
    last_error_at: datetime | None
    sessions_stored: int

    @property
    def key(self) -> str:
        return f"{self.workspace_id}/{self.compute_id}"

    def is_stale(self, max_lag_s: float) -> bool:
        """Active and not harvested successfully within max_lag_s (never counts as stale)."""
        return self.active and (self.lag_s is None or self.lag_s > max_lag_s)


async def target_health(conn: AsyncConnection) -> list[TargetHealth]:
    """Every known target with its health, ordered by workspace and gateway."""
    view = health_view.c
    rows = await conn.execute(select(health_view).order_by(view.workspace_id, view.compute_id))
    return [
        TargetHealth(
            **{
                **row._asdict(),
                "active": bool(row.active),
                "lag_s": None if row.lag_s is None else float(row.lag_s),
                "sessions_stored": int(row.sessions_stored or 0),
            }
        )
        for row in rows
    ]


async def read_status(database_url: str) -> list[TargetHealth]:
    """Open the database, check it is migrated, read target_health, close it."""
    engine = create_engine(database_url)
    try:
        await check_schema(engine)
        async with engine.connect() as conn:
            return await target_health(conn)
    finally:
        await engine.dispose()


def format_duration(seconds: float | None) -> str:
    """A lag for people: 45s, 12m, 3h05m, 2d04h; "never" for None."""
    if seconds is None:
        return "never"
    whole = max(int(seconds), 0)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m"
    if whole < 86400:
        return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
    return f"{whole // 86400}d{whole % 86400 // 3600:02d}h"


def _instant(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%SZ") if value is not None else "-"


def _one_line(text: str | None, width: int = 60) -> str:
    if not text:
        return ""
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


STATUS_HEADERS = (
    "target", "active", "last run", "last success", "lag", "sessions", "last error",
)  # fmt: skip


def status_rows(targets: Sequence[TargetHealth], max_lag_s: float) -> list[list[str]]:
    """The cells of the status table, one row per target; stale targets say so in "lag"."""
    rows = []
    for target in targets:
        lag = format_duration(target.lag_s)
        if target.is_stale(max_lag_s):
            lag += " STALE"
        rows.append(
            [
                target.key,
                "yes" if target.active else "no",
                f"{target.last_run_status or '-'} {_instant(target.last_run_started_at)}",
                _instant(target.last_success_at),
                lag,
                str(target.sessions_stored),
                _one_line(target.last_error),
            ]
        )
    return rows


def plain_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns aligned with spaces: readable in a terminal, a log or an e-mail."""
    columns = zip(headers, *rows, strict=False)
    widths = [max(len(str(cell)) for cell in column) for column in columns]
    lines = [headers, *rows]
    return "\n".join(
        "  ".join(str(cell).ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )


def _json_value(value: object) -> object:
    return value.isoformat() if isinstance(value, datetime) else value


def status_document(targets: Sequence[TargetHealth], max_lag_s: float) -> dict[str, Any]:
    """The `--json` document: {"targets": [...]}, each with every view column and `stale`."""
    return {
        "targets": [
            {
                **{key: _json_value(value) for key, value in asdict(target).items()},
                "stale": target.is_stale(max_lag_s),
            }
            for target in targets
        ],
        "max_lag_s": max_lag_s,
    }


def any_stale(targets: Sequence[TargetHealth], max_lag_s: float) -> bool:
    """True when an active target has gone longer than max_lag_s without a successful run."""
    return any(target.is_stale(max_lag_s) for target in targets)
