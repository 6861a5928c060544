"""One gateway, one pass: page -> normalize -> store, with a run row in the ledger.

No scheduler, no environment: callers hand in the engine, the API client and the gateway.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from harvester.api.client import ApiClient, RequestTally
from harvester.db import locks, store
from harvester.errors import ApiError, ApiUnavailable, HarvesterError, StoreError
from harvester.normalize import normalize_page
from harvester.paging import PageView, Step, next_step
from harvester.records import Gateway, RunMode, RunStatus

log = logging.getLogger(__name__)

#: how often a page that contradicts totalCount is read again before the pass gives up
MAX_REREADS_PER_PAGE = 3
REREAD_DELAY_S = 0.5


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class RunSummary:
    """What one pass over one gateway did; printed by `sync`, exported as metrics."""

    gateway: Gateway
    mode: RunMode
    status: RunStatus = "running"
    run_id: int | None = None
    pages: int = 0
    requests: int = 0
    seen: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped: int = 0
    invalid_values: int = 0
    state_changes: int = 0
    rereads: int = 0
    duration_s: float = 0.0
    error: str | None = None
    total_count: int | None = None
    problems: list[str] = field(default_factory=list)


#: called after each stored page with the running summary (for progress displays)
PageCallback = Callable[[RunSummary], None]


def _db_error(exc: SQLAlchemyError) -> StoreError:
    # SQLAlchemy messages can include statement parameters (whole pages); keep the gist.
    original = getattr(exc, "orig", None) or exc
    return StoreError(f"database error: {type(original).__name__}: {str(original)[:300]}")


async def harvest_gateway(
    engine: AsyncEngine,
    client: ApiClient,
    gateway: Gateway,
    *,
    page_size: int,
    mode: RunMode = "full",
    on_page: PageCallback | None = None,
) -> RunSummary:
    """Read every page of a gateway's listing and store it, one transaction per page.

    Never raises for API or database failures: they end the run as `failed` with the
    error recorded. Cancellation ends it as `interrupted` and propagates. When another
    process holds the gateway's lock, nothing is done and the status is `skipped`.
    """
    extra = {"target": gateway.key}
    summary = RunSummary(gateway=gateway, mode=mode)
    try:
        async with locks.gateway_lock(engine, gateway) as held:
            if not held:
                summary.status = "skipped"
                log.debug("another harvester is running this gateway; skipping", extra=extra)
                return summary
            await _run(engine, client, summary, page_size=page_size, on_page=on_page)
    except (SQLAlchemyError, OSError) as exc:
        summary.status = "failed"
        summary.error = _db_error(exc).message if isinstance(exc, SQLAlchemyError) else repr(exc)
        log.error("run failed: %s", summary.error, extra=extra)
    return summary


async def _run(
    engine: AsyncEngine,
    client: ApiClient,
    summary: RunSummary,
    *,
    page_size: int,
    on_page: PageCallback | None,
) -> None:
    """One pass while holding the gateway's lock; the outcome is written into `summary`."""
    gateway, mode = summary.gateway, summary.mode
    extra = {"target": gateway.key}
    started = time.monotonic()
    tally = RequestTally()
    recorded_requests = 0
    try:
        async with engine.begin() as conn:
            abandoned = await store.fail_open_runs(conn, gateway, finished_at=utc_now())
            summary.run_id = await store.start_run(conn, gateway, mode, utc_now())
        if abandoned:
            log.warning("closed %d run(s) left open by a stopped process", abandoned, extra=extra)
        seen_ids: set[str] = set()
        page_num = 1
        rereads_here = 0
        while True:
            page = await client.list_sessions(gateway, page_num, page_size, tally)
            summary.total_count = page.total_count
            view = PageView(page_num, page_size, len(page.sessions), page.total_count)
            step = next_step(view)
            if step is Step.REREAD and rereads_here < MAX_REREADS_PER_PAGE:
                rereads_here += 1
                summary.rereads += 1
                log.warning(
                    "page %d holds %d sessions but totalCount is %d; reading it again",
                    page_num, view.listed, page.total_count, extra=extra,
                )  # fmt: skip
                await asyncio.sleep(REREAD_DELAY_S * rereads_here)
                continue
            if step is Step.REREAD:
                raise ApiUnavailable(
                    f"gateway {gateway.key}: page {page_num} holds {view.listed} sessions "
                    f"although the service reports {page.total_count}; the listing is incomplete"
                )
            rereads_here = 0
            normalized = normalize_page(page.sessions, gateway)
            records = [r for r in normalized.records if r.session_id not in seen_ids]
            seen_ids.update(r.session_id for r in records)
            for problem in normalized.problems:
                log.warning("page %d: %s", page_num, problem, extra=extra)
            checkpoint = {
                "run_id": summary.run_id,
                "mode": mode,
                "page_num": page_num,
                "page_size": page_size,
                "total_count": page.total_count,
            }
            async with engine.begin() as conn:
                counts = await store.store_page(
                    conn,
                    run_id=summary.run_id,
                    gateway=gateway,
                    records=records,
                    requests=tally.requests - recorded_requests,
                    skipped=normalized.skipped,
                    invalid_values=normalized.invalid_values,
                    checkpoint=checkpoint,
                    now=utc_now(),
                )
            recorded_requests = tally.requests
            summary.pages += 1
            summary.seen += len(records)
            summary.inserted += counts.inserted
            summary.updated += counts.updated
            summary.unchanged += counts.unchanged
            summary.state_changes += counts.state_changes
            summary.skipped += normalized.skipped
            summary.invalid_values += normalized.invalid_values
            summary.requests = tally.requests
            if on_page is not None:
                on_page(summary)
            if step is Step.DONE:
                break
            page_num += 1
        summary.status = "succeeded"
    except asyncio.CancelledError:
        summary.status = "interrupted"
        summary.error = "interrupted by shutdown"
        raise
    except (HarvesterError, SQLAlchemyError, OSError) as exc:
        error = _db_error(exc) if isinstance(exc, SQLAlchemyError) else exc
        summary.status = "failed"
        summary.error = error.message if isinstance(error, HarvesterError) else repr(error)
        level = logging.WARNING if isinstance(error, ApiError) else logging.ERROR
        log.log(level, "run failed: %s", summary.error, extra=extra)
    finally:
        summary.requests = tally.requests
        summary.duration_s = time.monotonic() - started
        if summary.run_id is not None:
            await asyncio.shield(_close_run(engine, summary, tally.requests - recorded_requests))


async def _close_run(engine: AsyncEngine, summary: RunSummary, unrecorded_requests: int) -> None:
    """Write the run's final status; a database that is gone leaves it open for cleanup."""
    assert summary.run_id is not None
    try:
        async with engine.begin() as conn:
            await store.finish_run(
                conn,
                summary.run_id,
                summary.gateway,
                status=summary.status,
                finished_at=utc_now(),
                mode=summary.mode,
                requests=unrecorded_requests,
                error=summary.error,
            )
    except (SQLAlchemyError, OSError) as exc:
        log.error(
            "could not record the end of run %s: %s",
            summary.run_id,
            _db_error(exc).message if isinstance(exc, SQLAlchemyError) else exc,
            extra={"target": summary.gateway.key},
        )
