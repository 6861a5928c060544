"""The `harvester` command (composition root): parse arguments, load settings, set up
logging, run the chosen mode and map the outcome to an exit status (DESIGN §5).

Exit status: 0 every target succeeded; 1 a target or the runtime failed; 2 usage or
configuration error.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import sys
import threading
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
from sqlalchemy.engine import make_url

from harvester import __version__
from harvester.errors import ConfigError, HarvesterError
from harvester.settings import Settings, load_settings, resolve_config_path

if TYPE_CHECKING:
    from harvester.harvest import RunSummary
    from harvester.sync import SyncResult

log = logging.getLogger("harvester")

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2
T = TypeVar("T")


class RedactingFormatter(logging.Formatter):
    """Formats records (text or JSON lines) and masks any known secret that slipped in."""

    def __init__(self, fmt: str, secrets: list[str]) -> None:
        super().__init__()
        self._json = fmt == "json"
        self._secrets = sorted((s for s in secrets if len(s) >= 4), key=len, reverse=True)

    def format(self, record: logging.LogRecord) -> str:
        target = getattr(record, "target", None)
        if self._json:
            payload: dict[str, Any] = {
                "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
                "level": record.levelname.lower(),
                "logger": record.name,
                "message": record.getMessage(),
            }
            if target:
                payload["target"] = target
            if record.exc_info:
                payload["exception"] = self.formatException(record.exc_info)
            text = json.dumps(payload, ensure_ascii=False)
        else:
            prefix = f"[{target}] " if target else ""
            text = (
                f"{self.formatTime(record, '%Y-%m-%d %H:%M:%S')} {record.levelname:<7} "
                f"{prefix}{record.getMessage()}"
            )
            if record.exc_info:
                text += "\n" + self.formatException(record.exc_info)
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text


def known_secrets(settings: Settings | None) -> list[str]:
    """Values that must never be printed: AccessKey secret, STS token, database password."""
    secrets = [
        os.environ.get("ALIBABA_CLOUD_ACCESS_KEY_SECRET", ""),
        os.environ.get("ALIBABA_CLOUD_SECURITY_TOKEN", ""),
    ]
    if settings is not None:
        secrets.append(make_url(settings.database.url).password or "")
    return [s for s in secrets if s]


def configure_logging(level: str, fmt: str, settings: Settings | None) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(RedactingFormatter(fmt, known_secrets(settings)))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    logging.getLogger("harvester").setLevel(level)


def fail(message: str, status: int) -> None:
    """Print a user-facing error (no traceback) and exit."""
    click.echo(f"error: {message}", err=True)
    sys.exit(status)


def load(config: Path | None, log_level: str | None, log_format: str | None) -> Settings:
    """Settings from file and env, with logging configured; exits 2 on config errors."""
    try:
        settings = load_settings(resolve_config_path(config, os.environ))
    except ConfigError as exc:
        configure_logging("INFO", log_format or "text", None)
        fail(exc.message, EXIT_CONFIG)
    configure_logging(
        log_level or settings.logging.level, log_format or settings.logging.format, settings
    )
    return settings


async def _then_drain_sqlite_threads(coroutine: Coroutine[Any, Any, T]) -> T:
    try:
        return await coroutine
    finally:
        # aiosqlite stops the thread of a connection that failed to open without waiting
        # for it; the thread's last answer must reach the loop before the loop closes, or
        # the thread dies printing a traceback. Bounded: a second at most.
        for _ in range(100):
            if not any("_connection_worker_thread" in t.name for t in threading.enumerate()):
                break
            await asyncio.sleep(0.01)


def run_async(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine, turning harvester errors into messages and exit statuses."""
    try:
        return asyncio.run(_then_drain_sqlite_threads(coroutine))
    except ConfigError as exc:
        fail(exc.message, EXIT_CONFIG)
    except HarvesterError as exc:
        fail(exc.message, EXIT_FAILED)
    except KeyboardInterrupt:
        fail("interrupted", EXIT_FAILED)
    raise AssertionError("unreachable")


def common_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """--config, --log-level and --log-format, taken by every command."""
    command = click.option(
        "--log-format",
        type=click.Choice(["text", "json"]),
        default=None,
        help="Log line format (default from [logging] format).",
    )(command)
    command = click.option(
        "--log-level",
        type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
        default=None,
        help="Log level (default from [logging] level).",
    )(command)
    return click.option(
        "--config",
        "config",
        type=click.Path(path_type=Path, dir_okay=False),
        default=None,
        help="Config file (default: $HARVESTER_CONFIG, else config/harvester.toml if present).",
    )(command)


class _Commands(click.Group):
    """The command group; the simulator (aiohttp.web and its data model) loads on demand."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), "simulate"})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name == "simulate":
            from harvester.simulator.cli import simulate

            return simulate
        return super().get_command(ctx, cmd_name)


# Each command imports what it runs, so `harvester sync` never loads Alembic, the
# simulator, the daemon or the report renderer (start-up time and memory).
@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="harvester")
def main() -> None:
    """Keep a complete, queryable history of EMR Serverless Spark Livy Gateway sessions."""
    # A page makes thousands of short-lived containers; with the default threshold (700)
    # the collector runs, and promotes them, while they are still in use.
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])


#: allocations (net of frees) between collections of the youngest generation
GC_YOUNG_THRESHOLD = 2000


def freeze_startup_objects() -> None:
    """Exempt what start-up loaded (modules, classes, settings: it lives as long as the
    process) from garbage collection, so a full collection looks only at newer objects."""
    gc.freeze()


@main.command()
@common_options
def migrate(config: Path | None, log_level: str | None, log_format: str | None) -> None:
    """Bring the database to the latest schema."""
    from harvester.db import migrate as migrations
    from harvester.db.engine import create_engine

    settings = load(config, log_level, log_format)

    async def upgrade() -> str | None:
        engine = create_engine(settings.database.url)
        try:
            async with engine.begin() as conn:
                await migrations.upgrade(conn)
                return await migrations.current_revision(conn)
        except HarvesterError:
            raise
        except Exception as exc:
            cause = getattr(exc, "orig", None) or exc
            raise HarvesterError(
                f"migration failed on {engine.url.render_as_string(hide_password=True)}: "
                f"{type(cause).__name__}: {str(cause)[:300]}"
            ) from None
        finally:
            await engine.dispose()

    revision = run_async(upgrade())
    click.echo(f"database is at revision {revision}")


@main.command()
@common_options
@click.option(
    "--target",
    "targets",
    multiple=True,
    metavar="ID",
    help="Only this gateway (lc-…), workspace (w-…) or workspace/gateway; repeatable.",
)
@click.option(
    "--full",
    is_flag=True,
    help="Read every page of every gateway (default: incremental where a recent full pass "
    "found the listing ordered).",
)
def sync(
    config: Path | None,
    log_level: str | None,
    log_format: str | None,
    targets: tuple[str, ...],
    full: bool,
) -> None:
    """Harvest every target once, then exit (0 all succeeded, 1 a target failed)."""
    from harvester.sync import run_sync

    settings = load(config, log_level, log_format)
    freeze_startup_objects()
    interactive = sys.stderr.isatty()
    if interactive:
        from harvester.progress import SyncProgress

        with SyncProgress() as progress:
            result = run_async(
                run_sync(
                    settings,
                    targets=targets,
                    full=full,
                    on_page=progress.page_stored,
                    on_gateways=progress.add_gateways,
                )
            )
    else:
        result = run_async(run_sync(settings, targets=targets, full=full))
    print_summary(result, interactive)
    sys.exit(EXIT_OK if result.ok else EXIT_FAILED)


@main.command()
@common_options
def run(config: Path | None, log_level: str | None, log_format: str | None) -> None:
    """Harvest every target on schedule until SIGTERM/SIGINT."""
    from harvester.scheduler import Daemon

    settings = load(config, log_level, log_format)
    freeze_startup_objects()
    run_async(Daemon(settings).run())


def summary_line(run: RunSummary) -> str:
    """One logfmt line per target: parseable by scripts, readable by people."""
    fields: list[tuple[str, object]] = [
        ("target", run.gateway.key),
        ("status", run.status),
        ("mode", run.mode),
        ("pages", run.pages),
        ("requests", run.requests),
        ("new", run.inserted),
        ("updated", run.updated),
        ("unchanged", run.unchanged),
        ("skipped", run.skipped),
        ("invalid_values", run.invalid_values),
        ("state_changes", run.state_changes),
        ("gone", run.sessions_gone),
        ("drift", run.total_count_changes + run.repeated_ids),
        ("rereads", run.rereads),
        ("complete", "-" if run.complete is None else str(run.complete).lower()),
        ("duration_s", f"{run.duration_s:.2f}"),
    ]
    if run.error:
        fields.append(("error", json.dumps(run.error, ensure_ascii=False)))
    return " ".join(f"{key}={value}" for key, value in fields)


def print_summary(result: SyncResult, interactive: bool) -> None:
    if interactive:
        from harvester.progress import summary_table

        summary_table(result)
    else:
        for run in result.runs:
            click.echo(summary_line(run))
    for error in result.errors:
        click.echo(f"error: {error}", err=True)
    for run in result.runs:
        if run.status == "skipped":
            click.echo(f"note: {run.gateway.key}: skipped, another harvester runs it", err=True)
        elif run.status != "succeeded":
            click.echo(f"error: {run.gateway.key}: {run.error}", err=True)


# --- status and report (issue 6): read-only commands over the usage views ----------------


def _max_lag_s(_ctx: click.Context, _param: click.Parameter, value: str) -> float:
    from harvester.settings import parse_duration_s

    try:
        return parse_duration_s(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@main.command()
@common_options
@click.option("--json", "as_json", is_flag=True, help='Print {"targets": [...]} for scripts.')
@click.option(
    "--max-lag",
    default="1h",
    show_default=True,
    callback=_max_lag_s,
    help="An active target without a successful run for longer than this is stale (exit 1).",
)
def status(
    config: Path | None, log_level: str | None, log_format: str | None, as_json: bool,
    max_lag: float,
) -> None:  # fmt: skip
    """Show each target's last run, last success, lag and sessions (exit 1 if one is stale)."""
    from harvester import status as health

    settings = load(config, log_level, log_format)
    targets = run_async(health.read_status(settings.database.url))
    if as_json:
        click.echo(json.dumps(health.status_document(targets, max_lag), indent=2))
    elif not targets:
        click.echo("no targets known yet: run `harvester sync` first", err=True)
    elif sys.stdout.isatty():
        from rich.console import Console
        from rich.table import Table

        table = Table(*health.STATUS_HEADERS)
        for row in health.status_rows(targets, max_lag):
            table.add_row(*row, style="red" if row[4].endswith("STALE") else None)
        Console().print(table)
    else:
        click.echo(health.plain_table(health.STATUS_HEADERS, health.status_rows(targets, max_lag)))
    sys.exit(EXIT_FAILED if health.any_stale(targets, max_lag) else EXIT_OK)


@main.command()
@common_options
@click.option("--since", metavar="DATE", help="Start (UTC date or ISO time; default: until - 30d).")
@click.option("--until", metavar="DATE", help="End, excluded (default: end of today, UTC).")
@click.option(
    "--by", type=click.Choice(["queue", "user", "gateway", "workspace"]), default="queue",
    show_default=True, help="The dimension to break usage down by.",
)  # fmt: skip
@click.option(
    "--format", "fmt", type=click.Choice(["table", "csv", "json", "html"]), default="table",
    show_default=True, help="html is one self-contained page with a chart.",
)  # fmt: skip
@click.option("--per-day", is_flag=True, help="csv: one row per day and key, not totals.")
@click.option(
    "--output", type=click.Path(path_type=Path, dir_okay=False), default=None,
    help="Write to this file instead of stdout.",
)  # fmt: skip
def report(
    config: Path | None, log_level: str | None, log_format: str | None, since: str | None,
    until: str | None, by: str, fmt: str, per_day: bool, output: Path | None,
) -> None:  # fmt: skip
    """Usage (sessions, CU-hours) per queue, user, gateway or workspace over a period."""
    from datetime import UTC, datetime

    from harvester import report as usage

    settings = load(config, log_level, log_format)
    try:
        period = usage.resolve_period(since, until, datetime.now(UTC))
    except ConfigError as exc:
        fail(exc.message, EXIT_CONFIG)
    data = run_async(usage.read_report(settings.database.url, period, by))  # type: ignore[arg-type]
    text = usage.render(data, fmt, per_day=per_day)  # type: ignore[arg-type]
    if output is None:
        click.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        click.echo(f"wrote {output}", err=True)
