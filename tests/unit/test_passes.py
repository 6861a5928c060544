"""The pass ledger, mode choice and page location (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from harvester.passes import PassLedger, choose_mode, locate
from harvester.records import ComputeId, SessionId, SessionRecord, WorkspaceId


def record(number: int, state: str = "terminated") -> SessionRecord:
    """A session whose createTime is its number: higher numbers are newer."""
    return SessionRecord(
        SessionId(f"s{number}"), WorkspaceId("w"), ComputeId("c"), None, None, state, None,
        None, None, None, None, None, number, None, None, None, None, {},
    )  # fmt: skip


def page(*numbers: int) -> list[SessionRecord]:
    return [record(n) for n in numbers]


def test_a_still_listing_read_in_order_is_complete() -> None:
    ledger = PassLedger()
    ledger.observe(1, 6, page(6, 5, 4), last=False)
    ledger.observe(2, 6, page(3, 2, 1), last=True)
    assert ledger.complete
    assert ledger.stable
    assert ledger.proves_absent(10)
    assert ledger.proves_absent(None)


def test_sessions_added_at_the_head_only_repeat_ids() -> None:
    ledger = PassLedger()
    ledger.observe(1, 6, page(6, 5, 4), last=False)
    facts = ledger.observe(2, 7, page(4, 3, 2), last=False)  # 7 arrived at the head
    ledger.observe(3, 7, page(1), last=True)
    assert facts.repeated_ids == 1
    assert facts.contiguous
    assert ledger.total_count_changes == 1
    assert ledger.repeated_ids == 1
    assert ledger.complete
    assert not ledger.stable


def test_a_listing_that_shrank_in_front_of_the_reader_leaves_a_gap() -> None:
    ledger = PassLedger()
    ledger.observe(1, 9, page(90, 80, 70), last=False)
    # 60 was deleted while reading: 50 moved into page 1's place; page 2 starts at 40.
    facts = ledger.observe(2, 8, page(40, 30, 20), last=False)
    ledger.observe(3, 8, page(10, 5), last=True)
    assert not facts.contiguous
    assert ledger.gaps == [(40, 70)]
    assert not ledger.complete
    assert not ledger.proves_absent(50)
    assert not ledger.proves_absent(70)
    assert ledger.proves_absent(85)
    assert ledger.proves_absent(15)
    assert ledger.proves_absent(1)
    assert not ledger.proves_absent(None)
    # Reading page 1 again shows 50 right after 70: the gap is closed.
    ledger.observe(1, 8, page(80, 70, 50), last=False)
    ledger.observe(2, 8, page(40, 30, 20), last=False)
    assert ledger.gaps == []
    assert ledger.proves_absent(60)


def test_disorder_is_noticed_and_only_a_still_listing_is_complete() -> None:
    ledger = PassLedger()
    ledger.observe(1, 4, page(1, 9), last=False)
    ledger.observe(2, 4, page(5, 3), last=True)
    assert not ledger.ordered
    assert ledger.complete
    shuffled = PassLedger()
    shuffled.observe(1, 4, page(1, 9), last=False)
    shuffled.observe(2, 4, page(9, 3), last=True)  # a repeat: the order moved under us
    assert not shuffled.complete
    assert not shuffled.proves_absent(5)


def test_the_mode_follows_the_last_full_pass_and_the_order() -> None:
    now = datetime(2026, 11, 24, tzinfo=UTC)
    recent, old = now - timedelta(hours=1), now - timedelta(days=2)
    day = 86400.0

    def mode(**kwargs: object) -> str:
        arguments: dict[str, object] = {
            "force_full": False, "last_full_pass_at": recent, "listing_ordered": True,
            "now": now, "full_interval_s": day,
        }  # fmt: skip
        arguments.update(kwargs)
        return choose_mode(**arguments)[0]  # type: ignore[arg-type]

    assert mode() == "incremental"
    assert mode(force_full=True) == "full"
    assert mode(last_full_pass_at=None) == "full"
    assert mode(last_full_pass_at=old) == "full"
    assert mode(listing_ordered=False) == "full"
    assert mode(listing_ordered=None) == "full"


def test_locate_points_towards_the_page_holding_a_create_time() -> None:
    assert locate(95, [90, 80]) == "earlier"
    assert locate(70, [90, 80]) == "later"
    assert locate(85, [90, 80]) == "absent"
    assert locate(90, [90, 80]) == "earlier"  # ties may sit on the page before
    assert locate(80, [90, 80]) == "later"
    assert locate(5, [5, 5]) == "here"
    assert locate(5, []) == "earlier"


def test_the_open_session_index_matches_the_terminal_states() -> None:
    from harvester.db.tables import OPEN_SESSION
    from harvester.records import TERMINAL_STATES

    listed = ", ".join(f"'{state}'" for state in sorted(TERMINAL_STATES))
    assert str(OPEN_SESSION) == f"(state IS NULL OR state NOT IN ({listed}))"
