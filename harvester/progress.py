"""What `sync` shows on a terminal: a progress bar per gateway, then a summary table."""

from __future__ import annotations

import math
from types import TracebackType

from rich import box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn
from rich.table import Table

from harvester.harvest import RunSummary
from harvester.records import Gateway
from harvester.sync import SyncResult


class SyncProgress:
    """Rich progress bars on stderr; the bar of a gateway counts pages."""

    def __init__(self) -> None:
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("pages  {task.fields[sessions]} sessions"),
            console=Console(stderr=True),
            transient=True,
        )
        self._tasks: dict[str, TaskID] = {}

    def __enter__(self) -> SyncProgress:
        self._progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._progress.stop()

    def add_gateways(self, gateways: list[Gateway]) -> None:
        for gateway in gateways:
            self._tasks[gateway.key] = self._progress.add_task(gateway.key, total=None, sessions=0)

    def page_stored(self, summary: RunSummary) -> None:
        task = self._tasks.get(summary.gateway.key)
        if task is None:
            return
        pages_total = None
        if summary.total_count is not None and summary.pages:
            per_page = max(1, math.ceil(summary.seen / summary.pages))
            pages_total = max(summary.pages, math.ceil(summary.total_count / per_page))
        self._progress.update(
            task, completed=summary.pages, total=pages_total, sessions=summary.seen
        )


def summary_table(result: SyncResult) -> None:
    """The per-gateway summary as a table on stdout."""
    table = Table(
        title="harvest summary",
        caption="upd updated, same unchanged, skip skipped, chg state changes, s seconds",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    # Workspace and gateway ids on two lines keep the table within 80 columns.
    table.add_column("workspace/gateway", no_wrap=True)
    table.add_column("status", no_wrap=True)
    for column in ("pages", "req", "new", "upd", "same", "skip", "chg", "s"):
        table.add_column(column, justify="right", no_wrap=True, min_width=max(3, len(column)))
    for run in result.runs:
        style = "green" if run.status == "succeeded" else "red"
        table.add_row(
            f"{run.gateway.workspace_id}/\n{run.gateway.compute_id}",
            f"[{style}]{'ok' if run.status == 'succeeded' else run.status}[/{style}]",
            str(run.pages),
            str(run.requests),
            str(run.inserted),
            str(run.updated),
            str(run.unchanged),
            str(run.skipped),
            str(run.state_changes),
            f"{run.duration_s:.1f}",
        )
    Console().print(table)
