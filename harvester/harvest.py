"""One gateway, one pass: page -> normalize -> store, with a run row in the ledger.

A full pass reads every page, head to tail, then re-reads where it cannot prove it saw
everything (bounded) and marks what the service forgot. An incremental pass reads the
head until a page shows no change (or skips it when a deep open session shows nothing
was added), then goes straight to the pages where stored, still-moving sessions should
be. Which one runs is decided from what the store knows.

No scheduler, no environment: callers hand in the engine, the API client and the gateway.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from harvester.api.client import ApiClient, RequestTally, SessionsPage
from harvester.db import locks, store
from harvester.errors import ApiError, ApiUnavailable, HarvesterError, StoreError
from harvester.normalize import normalize_page
from harvester.paging import PageView, Step, next_step
from harvester.passes import PageKind, PassLedger, choose_mode, locate
from harvester.records import Gateway, NormalizedPage, RunMode, RunStatus, SessionRecord

log = logging.getLogger(__name__)

#: how often a page that contradicts totalCount is read again before the pass gives up
MAX_REREADS_PER_PAGE = 3
REREAD_DELAY_S = 0.5
#: pages an incremental pass reads to find one stored, still-moving session
MAX_PAGES_PER_OPEN_SESSION = 3
#: default time between full passes of a gateway ([schedule] full_interval)
FULL_INTERVAL_S = 24 * 3600.0


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
    total_count_changes: int = 0
    repeated_ids: int = 0
    sessions_gone: int = 0
    complete: bool | None = None
    notes: list[str] = field(default_factory=list)
    duration_s: float = 0.0
    error: str | None = None
    total_count: int | None = None
    problems: list[str] = field(default_factory=list)


#: called after each stored page with the running summary (for progress displays)
PageCallback = Callable[[RunSummary], None]


def _db_error(exc: SQLAlchemyError | OSError) -> StoreError:
    # SQLAlchemy messages can include statement parameters (whole pages); keep the gist.
    original = getattr(exc, "orig", None) or exc
    return StoreError(f"database error: {type(original).__name__}: {str(original)[:300]}")


def _as_error(exc: HarvesterError | SQLAlchemyError | OSError) -> HarvesterError:
    """What a run failed of, as one of ours (API errors arrive wrapped already)."""
    return exc if isinstance(exc, HarvesterError) else _db_error(exc)


async def harvest_gateway(
    engine: AsyncEngine,
    client: ApiClient,
    gateway: Gateway,
    *,
    page_size: int,
    force_full: bool = False,
    full_interval_s: float = FULL_INTERVAL_S,
    on_page: PageCallback | None = None,
) -> RunSummary:
    """Harvest one gateway once, full or incremental, one transaction per page.

    Never raises for API or database failures: they end the run as `failed` with the
    error recorded. Cancellation ends it as `interrupted` and propagates. When another
    process holds the gateway's lock, nothing is done and the status is `skipped`.
    """
    extra = {"target": gateway.key}
    summary = RunSummary(gateway=gateway, mode="full")
    try:
        async with locks.gateway_lock(engine, gateway) as lock:
            if not lock.held:
                summary.status = "skipped"
                log.debug("another harvester is running this gateway; skipping", extra=extra)
                return summary
            run = _Pass(
                engine, client, summary, page_size=page_size, on_page=on_page, writer=lock.conn
            )
            await run.run(force_full=force_full, full_interval_s=full_interval_s)
    except (SQLAlchemyError, OSError) as exc:
        summary.status = "failed"
        summary.error = _as_error(exc).message
        log.error("run failed: %s", summary.error, extra=extra)
    return summary


@dataclass(frozen=True, slots=True)
class _Answer:
    """A page as the service sent it, and cleaned."""

    page: SessionsPage
    normalized: NormalizedPage


class _Pass:
    """One run over one gateway while holding its lock; fills in the summary."""

    def __init__(
        self,
        engine: AsyncEngine,
        client: ApiClient,
        summary: RunSummary,
        *,
        page_size: int,
        on_page: PageCallback | None,
        writer: AsyncConnection | None = None,
    ) -> None:
        self.engine = engine
        #: the autocommit connection holding the gateway's lock: pages are written on it
        #: (PostgreSQL); None: a transaction per page on a pooled connection (SQLite)
        self.writer = writer
        self.client = client
        self.summary = summary
        self.gateway = summary.gateway
        self.page_size = page_size
        self.on_page = on_page
        self.extra = {"target": self.gateway.key}
        self.tally = RequestTally()
        self.recorded_requests = 0
        self.ledger = PassLedger()
        #: (newest, oldest) createTime of each page as last read in this pass
        self.page_times: dict[int, tuple[int, ...]] = {}
        self.started_at = utc_now()

    async def run(self, *, force_full: bool, full_interval_s: float) -> None:
        summary, gateway = self.summary, self.gateway
        started = time.monotonic()
        try:
            async with self.engine.begin() as conn:
                abandoned = await store.fail_open_runs(conn, gateway, finished_at=utc_now())
                state = await store.target_state(conn, gateway)
                summary.mode, reason = choose_mode(
                    force_full=force_full,
                    last_full_pass_at=state.last_full_pass_at,
                    listing_ordered=state.listing_ordered,
                    now=utc_now(),
                    full_interval_s=full_interval_s,
                )
                summary.run_id = await store.start_run(conn, gateway, summary.mode, utc_now())
            if abandoned:
                log.warning(
                    "closed %d run(s) left open by a stopped process", abandoned, extra=self.extra
                )
            log.debug("%s pass: %s", summary.mode, reason, extra=self.extra)
            if summary.mode == "full":
                await self.full_pass(first_page=1)
            else:
                await self.incremental_pass()
            summary.status = "succeeded"
        except asyncio.CancelledError:
            summary.status = "interrupted"
            summary.error = "interrupted by shutdown"
            raise
        except (HarvesterError, SQLAlchemyError, OSError) as exc:
            error = _as_error(exc)
            summary.status = "failed"
            summary.error = error.message
            level = logging.WARNING if isinstance(error, ApiError) else logging.ERROR
            log.log(level, "run failed: %s", summary.error, extra=self.extra)
        finally:
            summary.requests = self.tally.requests
            summary.duration_s = time.monotonic() - started
            self._fill_drift()
            if summary.run_id is not None:
                await asyncio.shield(self._close_run())

    # -- the two kinds of pass ----------------------------------------------------------

    async def full_pass(self, *, first_page: int) -> None:
        """Every page in order, then bounded re-reads of unproven boundaries, then gone marks."""
        page_num = first_page
        # The next page is fetched while this one is stored: the API and the database
        # work at the same time. Pages are still accounted and stored in order.
        fetching = asyncio.ensure_future(self._fetch(page_num))
        try:
            while True:
                answer, step = await fetching
                if page_num == 1 and step is not Step.DONE:
                    await self.read_tail_early(answer.page.total_count)
                if step is not Step.DONE:
                    fetching = asyncio.ensure_future(self._fetch(page_num + 1))
                await self.store(page_num, answer, step)
                if step is Step.DONE:
                    break
                page_num += 1
        finally:
            if not fetching.done():
                fetching.cancel()
                with contextlib.suppress(asyncio.CancelledError, HarvesterError, OSError):
                    await fetching
        await self.close_gaps()
        if self.ledger.read_head and self.ledger.reached_end:
            await self.mark_gone()

    async def read_tail_early(self, total_count: int) -> None:
        """Read the tail right after the head: the oldest sessions are the next the service
        forgets, and the sweep reaches them last.

        A short last page is read, then the page before it, then the last one again:
        sessions added at the head meanwhile push the tail back into the page read last.
        """
        last_page = -(-total_count // self.page_size)
        if last_page <= 2:
            return
        pages = [last_page]
        if total_count % self.page_size and last_page - 1 > 2:
            pages += [last_page - 1, last_page]
        for page_num in pages:
            page = await self.client.list_sessions(
                self.gateway, page_num, self.page_size, self.tally
            )
            await self.store(page_num, self._answer(page), Step.NEXT, kind="jump")

    async def incremental_pass(self) -> None:
        """The head, then the pages where stored, still-moving sessions should be.

        The head is skipped when the shallowest open session lies below the first page and
        is found exactly where the store places it: nothing was added in front of it (the
        service forgets at the tail).
        """
        async with self.engine.connect() as conn:
            open_sessions = await store.open_sessions(conn, self.gateway)
        placed = [s for s in open_sessions if s.create_time is not None]
        added: int | None = None
        if placed and placed[0].position >= self.page_size:
            found_at = await self.refresh(placed[0], shift=0)
            if not self.ledger.ordered:
                await self.fall_back_to_full(0, Step.NEXT)
                return
            if found_at == placed[0].position:
                added = 0
        if added is None:
            added = await self.read_head()
            if added is None:
                return
        for session in open_sessions:
            if self.ledger.has_seen(session.session_id):
                continue
            await self.refresh(session, shift=added)
            if not self.ledger.ordered:
                await self.fall_back_to_full(0, Step.NEXT)
                return

    async def read_head(self) -> int | None:
        """Pages from the first until one shows no change: no new session (new ones are
        the newest, so none lies beyond it) and no stored one changed (a change near the
        head, a late cost figure say, keeps the reading going). How many were new (None:
        the listing proved unordered and a full pass ran instead)."""
        page_num, added = 1, 0
        while True:
            (_, counts), step = await self.read_records(page_num)
            if not self.ledger.ordered:
                await self.fall_back_to_full(page_num, step)
                return None
            added += counts.inserted
            if step is Step.DONE or counts.inserted == counts.updated == 0:
                return added
            page_num += 1

    async def fall_back_to_full(self, page_num: int, step: Step) -> None:
        note = "the listing is not ordered newest first by createTime: full pass instead"
        log.warning(note, extra=self.extra)
        self.summary.notes.append(note)
        self.summary.mode = "full"
        if page_num == 1 and step is Step.DONE:
            self.ledger.reached_end = True
            await self.mark_gone()
            return
        # Pages read so far were not necessarily in sequence: start the sweep over.
        self.ledger = PassLedger(ordered=False)
        self.page_times.clear()
        await self.full_pass(first_page=1)

    async def refresh(self, session: store.OpenSession, *, shift: int) -> int | None:
        """Read the page where a stored, still-moving session should be (`shift` sessions
        were added in front of it since it was stored); look around a bit. Where the
        listing has it now, if a page this call read shows it."""
        if session.create_time is None:
            return None  # cannot be placed in the listing; the next full pass refreshes it
        created_ms = int(session.create_time.timestamp() * 1000)
        page_num = (session.position + shift) // self.page_size + 1
        last_page = self._last_page()
        if last_page is not None:
            page_num = min(page_num, last_page)
        for _ in range(MAX_PAGES_PER_OPEN_SESSION):
            if page_num not in self.page_times:
                (records, _), _ = await self.read_records(page_num, kind="jump")
                for index, record in enumerate(records):
                    if record.session_id == session.session_id:
                        return (page_num - 1) * self.page_size + index
            if self.ledger.has_seen(session.session_id):
                return None
            direction = locate(created_ms, self.page_times.get(page_num, ()))
            if direction == "earlier" and page_num > 1:
                page_num -= 1
            elif direction == "later" and page_num < (self._last_page() or 1):
                page_num += 1
            else:
                break
        log.debug(
            "open session %s is not where the store places it; the next full pass settles it",
            session.session_id,
            extra=self.extra,
        )
        return None

    def _last_page(self) -> int | None:
        """The last page number by the totalCount read last (None before any read)."""
        total = self.summary.total_count
        return None if total is None else max(1, -(-total // self.page_size))

    async def close_gaps(self) -> None:
        """Re-read around boundaries the pass could not prove contiguous, within a budget."""
        budget = max(2, self.summary.pages // 10)
        attempts = 0
        while self.ledger.gaps and self.ledger.ordered and attempts + 2 <= budget:
            low_ms, high_ms = self.ledger.gaps[0]
            page_num = self._page_before(high_ms)
            for number in (page_num, page_num + 1):
                await self.read(number, kind="reread")
                self.summary.rereads += 1
                attempts += 1
            if self.ledger.gaps and self.ledger.gaps[0] == (low_ms, high_ms):
                break  # the listing keeps moving there; leave it to the next pass
        if self.ledger.gaps:
            note = (
                f"{len(self.ledger.gaps)} page boundaries could not be proven contiguous "
                "(the listing shrank while it was read); sessions in them are not marked gone"
            )
            self.summary.notes.append(note)
            log.info(note, extra=self.extra)

    def _page_before(self, created_ms: int) -> int:
        """The last page read whose sessions are all at least as new as `created_ms`."""
        candidates = [
            n for n, times in self.page_times.items() if times and times[-1] >= created_ms
        ]
        return max(candidates, default=1)

    async def mark_gone(self) -> None:
        """Mark stored sessions that the pass proves the service no longer lists."""
        async with self.engine.begin() as conn:
            # Sessions first stored by this run were seen by it: only older ones can be gone.
            stored = store.listed_sessions(conn, self.gateway, first_seen_before=self.started_at)
            gone = [
                session_id
                async for session_id, created in stored
                if not self.ledger.has_seen(session_id)
                and self.ledger.proves_absent(
                    None if created is None else int(created.timestamp() * 1000)
                )
            ]
            if gone:
                self.summary.sessions_gone = await store.mark_gone(conn, gone, now=utc_now())
        if gone:
            log.info("%d sessions are no longer listed; marked gone", len(gone), extra=self.extra)

    # -- reading and storing one page ---------------------------------------------------

    async def read(self, page_num: int, *, kind: PageKind = "sweep") -> Step:
        return (await self.read_records(page_num, kind=kind))[1]

    async def read_records(
        self, page_num: int, *, kind: PageKind = "sweep"
    ) -> tuple[tuple[list[SessionRecord], store.PageCounts], Step]:
        """Fetch one page, store what this pass has not stored yet, account for it."""
        answer, step = await self._fetch(page_num)
        return await self.store(page_num, answer, step, kind=kind), step

    async def store(
        self, page_num: int, answer: _Answer, step: Step, *, kind: PageKind = "sweep"
    ) -> tuple[list[SessionRecord], store.PageCounts]:
        """Store what this pass has not stored yet of a fetched page; account for it."""
        summary, gateway = self.summary, self.gateway
        page, normalized = answer.page, answer.normalized
        summary.total_count = page.total_count
        fresh = [r for r in normalized.records if not self.ledger.has_seen(r.session_id)]
        self.ledger.observe(
            page_num, page.total_count, normalized.records, last=step is Step.DONE, kind=kind
        )
        times = [r.create_time_ms for r in normalized.records if r.create_time_ms is not None]
        self.page_times[page_num] = (times[0], times[-1]) if times else ()
        for problem in normalized.problems:
            log.warning("page %d: %s", page_num, problem, extra=self.extra)
        checkpoint = {
            "run_id": summary.run_id,
            "mode": summary.mode,
            "page_num": page_num,
            "page_size": self.page_size,
            "total_count": page.total_count,
        }
        assert summary.run_id is not None
        # Requests made so far; the next page's fetch may add more while this one is
        # written, and those belong to the next page's count (or the run's close).
        requests = self.tally.requests
        async with contextlib.AsyncExitStack() as stack:
            conn = self.writer
            if conn is None:
                conn = await stack.enter_async_context(self.engine.begin())
            counts = await store.store_page(
                conn,
                run_id=summary.run_id,
                gateway=gateway,
                records=fresh,
                requests=requests - self.recorded_requests,
                skipped=normalized.skipped,
                invalid_values=normalized.invalid_values,
                checkpoint=checkpoint,
                now=utc_now(),
            )
        self.recorded_requests = requests
        summary.pages += 1
        summary.seen += len(fresh)
        summary.inserted += counts.inserted
        summary.updated += counts.updated
        summary.unchanged += counts.unchanged
        summary.state_changes += counts.state_changes
        summary.skipped += normalized.skipped
        summary.invalid_values += normalized.invalid_values
        summary.requests = self.tally.requests
        if self.on_page is not None:
            self.on_page(summary)
        return normalized.records, counts

    def _answer(self, page: SessionsPage) -> _Answer:
        return _Answer(page, normalize_page(page.sessions, self.gateway))

    async def _fetch(self, page_num: int) -> tuple[_Answer, Step]:
        """One page answer, cleaned as soon as it arrives (while the previous page is being
        written); a page that contradicts totalCount is read again a few times."""
        for attempt in range(MAX_REREADS_PER_PAGE + 1):
            page = await self.client.list_sessions(
                self.gateway, page_num, self.page_size, self.tally
            )
            view = PageView(page_num, self.page_size, len(page.sessions), page.total_count)
            step = next_step(view)
            if step is not Step.REREAD:
                return self._answer(page), step
            if attempt < MAX_REREADS_PER_PAGE:
                self.summary.rereads += 1
                log.warning(
                    "page %d holds %d sessions but totalCount is %d; reading it again",
                    page_num, view.listed, page.total_count, extra=self.extra,
                )  # fmt: skip
                await asyncio.sleep(REREAD_DELAY_S * (attempt + 1))
        raise ApiUnavailable(
            f"gateway {self.gateway.key}: page {page_num} holds {view.listed} sessions although "
            f"the service reports {page.total_count}; the listing is incomplete"
        )

    # -- the end of the run -------------------------------------------------------------

    def _fill_drift(self) -> None:
        summary, ledger = self.summary, self.ledger
        summary.total_count_changes = ledger.total_count_changes
        summary.repeated_ids = ledger.repeated_ids
        if summary.mode == "full" and summary.status in ("running", "succeeded"):
            summary.complete = ledger.complete

    async def _close_run(self) -> None:
        """Write the run's final status; a database that is gone leaves it open for cleanup."""
        summary = self.summary
        assert summary.run_id is not None
        outcome = store.PassOutcome(
            total_count_changes=summary.total_count_changes,
            repeated_ids=summary.repeated_ids,
            rereads=summary.rereads,
            sessions_gone=summary.sessions_gone,
            complete=summary.complete,
            notes="; ".join(summary.notes) or None,
            listing_ordered=self.ledger.ordered if summary.mode == "full" else None,
        )
        try:
            async with self.engine.begin() as conn:
                await store.finish_run(
                    conn,
                    summary.run_id,
                    summary.gateway,
                    status=summary.status,
                    finished_at=utc_now(),
                    mode=summary.mode,
                    requests=self.tally.requests - self.recorded_requests,
                    error=summary.error,
                    outcome=outcome,
                )
        except (SQLAlchemyError, OSError) as exc:
            log.error(
                "could not record the end of run %s: %s",
                summary.run_id,
                _db_error(exc).message,
                extra=self.extra,
            )
