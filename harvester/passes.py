"""What one pass over a gateway's listing has read, and what that proves (pure).

The listing is paged by page number while it changes: sessions appear at the head and
the service forgets the oldest at the tail. Reading pages in order then yields repeats
(harmless) but can only skip a session where the listing shrank in front of the reader.
The ledger watches every page for that: where a page boundary is not proven contiguous,
it keeps the `createTime` range in which a session could have slipped by (a gap), so
re-reads can close it and `gone_at` is only set where absence is proven.

Proof relies on order, and order is checked on the data: newest first by `createTime`.
An unordered listing is only proven complete when it held still for the whole pass.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from harvester.records import RunMode, SessionRecord

#: a closed createTime range (epoch ms) in which a listed session may have been missed
Gap = tuple[int, int]
PageKind = Literal["sweep", "reread", "jump"]


@dataclass(frozen=True, slots=True)
class PageFacts:
    """What one page showed, as the ledger saw it."""

    page_num: int
    total_count: int
    repeated_ids: int
    #: the boundary from the previous page is proven contiguous (always True for jumps)
    contiguous: bool


@dataclass(slots=True)
class PassLedger:
    """Ids seen, drift observed and the proven coverage of one pass.

    Ids are kept as their 64-bit `hash()` (SipHash, keyed afresh in each process): a
    pass over 25,000 sessions holds 0.8 MB of them instead of 1.8 MB of strings. Two ids
    of one gateway colliding in one pass (odds about 1 in 10^10) would let the pass skip
    the second as already seen; a later pass, keyed differently, stores it.
    """

    #: ids read by the sweep and its re-reads; repeats among them are drift
    swept: set[int] = field(default_factory=set)
    #: ids read only on pages out of order (few: the tail, pages of open sessions)
    jumped: set[int] = field(default_factory=set)
    ordered: bool = True
    total_count_changes: int = 0
    repeated_ids: int = 0
    read_head: bool = False
    reached_end: bool = False
    gaps: list[Gap] = field(default_factory=list)
    _last_total: int | None = None
    #: the sweep's page read last: number, ids, totalCount, oldest and newest createTime
    _previous: tuple[int, frozenset[int], int, int | None, int | None] | None = None

    def observe(
        self,
        page_num: int,
        total_count: int,
        records: Sequence[SessionRecord],
        *,
        last: bool,
        kind: PageKind = "sweep",
    ) -> PageFacts:
        """Account for one page answer.

        `sweep` pages are read in order: their boundaries are checked and their repeats
        are drift. A `reread` is checked the same way but repeats are expected. A `jump`
        (a page read out of order) proves only what lies inside it.
        """
        ids = [hash(r.session_id) for r in records]
        times = [r.create_time_ms for r in records if r.create_time_ms is not None]
        repeats = sum(1 for i in ids if i in self.swept) if kind == "sweep" else 0
        in_order = all(a >= b for a, b in itertools.pairwise(times))
        previous = self._previous if kind != "jump" else None
        follows = previous is not None and previous[0] == page_num - 1
        if follows and previous is not None and previous[3] is not None:
            oldest_before = previous[3]
            fresh_times = [
                r.create_time_ms
                for r in records
                if r.create_time_ms is not None and hash(r.session_id) not in previous[1]
            ]
            in_order = in_order and all(t <= oldest_before for t in fresh_times)
        if not in_order:
            self.ordered = False
        if self._last_total is not None and total_count != self._last_total:
            self.total_count_changes += 1
        self._last_total = total_count
        contiguous = True
        if follows and previous is not None:
            overlap = bool(previous[1].intersection(ids))
            contiguous = overlap or total_count >= previous[2]
            if not contiguous:
                if times and previous[3] is not None:
                    self.gaps.append((min(times[0], previous[3]), max(times[0], previous[3])))
                else:
                    self.gaps.append((-(2**62), 2**62))
        if times:
            # Inside one answer the listing is contiguous: nothing strictly between
            # its newest and oldest session can be missing; across a proven boundary
            # that holds from the previous page's newest.
            newest = times[0]
            if follows and contiguous and previous is not None and previous[4] is not None:
                newest = max(newest, previous[4])
            self._close_gaps(times[-1], newest)
        if kind == "jump":
            self.jumped.update(i for i in ids if i not in self.swept)
            return PageFacts(page_num, total_count, repeats, contiguous)
        if kind == "sweep":
            self.repeated_ids += repeats
        self.swept.update(ids)
        self._previous = (
            page_num,
            frozenset(ids),
            total_count,
            times[-1] if times else None,
            times[0] if times else None,
        )
        if page_num == 1:
            self.read_head = True
        if last and (follows or page_num == 1):
            self.reached_end = True
        return PageFacts(page_num, total_count, repeats, contiguous)

    def has_seen(self, session_id: str) -> bool:
        """Whether any page of the pass listed this session."""
        key = hash(session_id)
        return key in self.swept or key in self.jumped

    def _close_gaps(self, low_ms: int, high_ms: int) -> None:
        remaining: list[Gap] = []
        for gap_low, gap_high in self.gaps:
            # Keep the parts of the gap outside the open range (low_ms, high_ms).
            pieces = [(gap_low, min(gap_high, low_ms)), (max(gap_low, high_ms), gap_high)]
            remaining.extend((a, b) for a, b in pieces if a <= b)
        self.gaps = remaining

    @property
    def stable(self) -> bool:
        """The listing held still: same totalCount throughout and no id read twice."""
        return self.total_count_changes == 0 and self.repeated_ids == 0

    @property
    def complete(self) -> bool:
        """Every session listed when the pass began (and still listed) was read."""
        if not (self.read_head and self.reached_end):
            return False
        return not self.gaps if self.ordered else self.stable

    def proves_absent(self, create_time_ms: int | None) -> bool:
        """Whether a stored session with this createTime, not seen, is no longer listed."""
        if self.complete:
            return True
        if not (self.ordered and self.read_head and self.reached_end) or create_time_ms is None:
            return False
        return not any(low <= create_time_ms <= high for low, high in self.gaps)


def choose_mode(
    *,
    force_full: bool,
    last_full_pass_at: datetime | None,
    listing_ordered: bool | None,
    now: datetime,
    full_interval_s: float,
) -> tuple[RunMode, str]:
    """Full or incremental for the next run of a gateway, and why."""
    if force_full:
        return "full", "a full pass was asked for"
    if last_full_pass_at is None:
        return "full", "no complete full pass yet"
    if listing_ordered is False:
        return "full", "the listing is not ordered newest first, so every pass is full"
    if not listing_ordered:
        return "full", "the listing order is not known yet"
    if (now - last_full_pass_at).total_seconds() >= full_interval_s:
        return "full", "the last full pass is older than full_interval"
    return "incremental", "a recent full pass found the listing ordered"


Direction = Literal["here", "earlier", "later", "absent"]


def locate(create_time_ms: int, page_times: Sequence[int]) -> Direction:
    """Where a session with this createTime lies relative to a newest-first page."""
    if not page_times:
        return "earlier"
    if create_time_ms > page_times[0]:
        return "earlier"
    if create_time_ms < page_times[-1]:
        return "later"
    if create_time_ms == page_times[0] and create_time_ms == page_times[-1]:
        return "here"  # a page of one createTime: ties may spill either way
    if create_time_ms == page_times[0]:
        return "earlier"
    if create_time_ms == page_times[-1]:
        return "later"
    return "absent"
