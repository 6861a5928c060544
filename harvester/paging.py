"""Paging decisions for page-number listings (pure).

The listing has `totalCount` and pages of `pageSize`; a page shorter than `pageSize` ends
the listing only when it reaches `totalCount`. Anything else is an anomaly to re-read.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Step(Enum):
    NEXT = "next"  # read the following page
    DONE = "done"  # the listing has been read to its end
    REREAD = "reread"  # the page contradicts totalCount: read it again


@dataclass(frozen=True, slots=True)
class PageView:
    """What one answer said about the listing."""

    page_num: int
    page_size: int
    listed: int
    total_count: int

    @property
    def reached(self) -> int:
        """How many sessions of the listing lie up to the end of this page."""
        return (self.page_num - 1) * self.page_size + self.listed


def next_step(view: PageView) -> Step:
    """Decide what to read after this page."""
    if view.reached >= view.total_count:
        return Step.DONE
    if view.listed < view.page_size:
        return Step.REREAD
    return Step.NEXT
