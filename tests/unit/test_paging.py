"""Paging decisions: when a listing is finished, and when a page must be read again."""

from __future__ import annotations

import pytest

from harvester.paging import PageView, Step, next_step


@pytest.mark.parametrize(
    ("page_num", "listed", "total", "step"),
    [
        (1, 100, 250, Step.NEXT),
        (3, 50, 250, Step.DONE),  # short page consistent with totalCount
        (2, 100, 200, Step.DONE),  # full last page
        (1, 0, 0, Step.DONE),  # empty gateway
        (2, 0, 250, Step.REREAD),  # empty page while totalCount says more
        (2, 40, 250, Step.REREAD),  # short page before the end
        (3, 40, 240, Step.DONE),  # tail expired while reading: the count shrank too
        (1, 120, 100, Step.DONE),  # longer than asked: still the end
    ],
)
def test_next_step(page_num: int, listed: int, total: int, step: Step) -> None:
    assert next_step(PageView(page_num, 100, listed, total)) is step
