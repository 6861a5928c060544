"""The simulator's pure model: generation, time, drift, order, quirks, fault decisions."""

from __future__ import annotations

import json
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harvester.simulator.model import (
    ABSENT,
    KNOWN_STATES,
    FaultConfig,
    ServiceError,
    SimulatedService,
    parse_int,
)
from harvester.simulator.server import NonceCache

NOW_MS = 1_767_225_600_000
WS = "w-unit"
GW = "lc-unit"


def small(count: int = 100, **kwargs: object) -> SimulatedService:
    service = SimulatedService(seed=11, now_ms=NOW_MS, **kwargs)  # type: ignore[arg-type]
    service.add_workspace(WS)
    service.add_gateway(WS, GW)
    service.add_sessions(WS, GW, count)
    return service


def listed_ids(service: SimulatedService, page_size: int) -> list[str]:
    ids: list[str] = []
    page_num = 1
    while True:
        page = service.list_sessions_page(WS, GW, page_num=page_num, page_size=page_size)
        if not page.fragments:
            return ids
        ids += [json.loads(fragment)["sessionId"] for fragment in page.fragments]
        page_num += 1


def test_generation_is_deterministic_with_the_seed() -> None:
    def snapshot(seed: int) -> list[dict[str, object]]:
        service = SimulatedService.generate(seed, sessions_per_gateway=50, now_ms=NOW_MS)
        return [
            service.record(session_id)
            for workspace_id in service.workspace_ids()
            for gateway_id in service.gateway_ids(workspace_id)
            for session_id in service.session_ids(workspace_id, gateway_id)
        ]

    assert snapshot(1) == snapshot(1)
    assert snapshot(1) != snapshot(2)


def test_generate_shape() -> None:
    service = SimulatedService.generate(
        0, workspaces=2, gateways_per_workspace=3, sessions_per_gateway=10, empty_gateways=2
    )
    counts = [
        len(service.session_ids(w, g))
        for w in service.workspace_ids()
        for g in service.gateway_ids(w)
    ]
    assert sorted(counts) == [0, 0] + [10] * 6


def test_generated_mix_is_realistic() -> None:
    service = small(2000, quirks=False)
    records = [service.record(i) for i in service.session_ids(WS, GW)]
    states = [r["state"] for r in records]
    assert states.count("terminated") > len(states) * 0.7
    assert states.count("error") > 0
    assert len({json.loads(str(r["sparkConf"]))["proxyUser"] for r in records}) >= 5
    assert len({r["queue"] for r in records}) >= 2
    ages_days = [(NOW_MS - int(str(r["createTime"]))) / 86_400_000 for r in records]
    assert max(ages_days) > 6
    assert min(ages_days) >= 0
    for record in records:
        if record["state"] in {"terminated", "error"}:
            assert int(str(record["endTime"])) >= int(str(record["createTime"]))
        else:
            assert record["endTime"] == 0


def test_sessions_are_kept_newest_first() -> None:
    service = small(300)
    created = [service.session(i).create_time_ms for i in service.session_ids(WS, GW)]
    assert created == sorted(created, reverse=True)
    [old] = service.add_sessions(WS, GW, 1, create_time_ms=NOW_MS - 30 * 86_400_000)
    assert service.session_ids(WS, GW)[-1] == old


@pytest.mark.parametrize("state", [*KNOWN_STATES, "dead"])
def test_add_sessions_in_a_given_state(state: str) -> None:
    service = small(0)
    ids = service.add_sessions(WS, GW, 20, state=state)
    for session_id in ids:
        session = service.session(session_id)
        assert session.state == state
        if state in KNOWN_STATES:  # an unknown state keeps whatever endTime it had
            assert (session.end_time_ms > 0) == (state in {"terminated", "error"})


def test_finish_and_set_state() -> None:
    service = small(0, quirks=False)
    [session_id] = service.add_sessions(WS, GW, 1, state="running")
    service.advance(30)
    service.finish(session_id)
    session = service.session(session_id)
    assert (session.state, session.end_time_ms) == ("terminated", NOW_MS + 30_000)
    final = service.record(session_id)
    service.advance(600)
    service.finish(session_id, "error")  # already ended: no change
    assert service.record(session_id) == final
    with pytest.raises(ValueError, match="finish state"):
        service.finish(session_id, "running")
    service.set_state(session_id, "zombie")
    service.advance(600)
    assert service.session(session_id).state == "zombie"
    with pytest.raises(KeyError):
        service.set_state("ls-nope", "running")


def test_advance_runs_the_life_cycle() -> None:
    service = small(0, quirks=False)
    ids = service.add_sessions(WS, GW, 50, state="starting")
    with pytest.raises(ValueError, match="forward"):
        service.advance(-1)
    service.advance(100)
    assert {service.session(i).state for i in ids} <= {"running", "terminating", "error"}
    usage = {i: service.session(i).vcore_seconds for i in ids}
    service.advance(60)
    grown = [i for i in ids if service.session(i).vcore_seconds > usage[i]]
    assert grown
    service.advance(5 * 86_400)
    states = {service.session(i).state for i in ids}
    assert states <= {"terminated", "error", "running"}  # a few run until stopped
    assert "terminated" in states


def test_new_sessions_per_minute() -> None:
    service = small(10)
    service.new_sessions_per_minute = 2
    service.advance(300)
    assert len(service.session_ids(WS, GW)) == 20
    newest = service.session(service.session_ids(WS, GW)[0])
    assert NOW_MS < newest.create_time_ms <= service.now_ms


def test_expire_oldest_forgets_the_tail() -> None:
    service = small(10)
    oldest = service.session_ids(WS, GW)[-3:]
    assert sorted(service.expire_oldest(WS, GW, 3)) == sorted(oldest)
    assert len(service.session_ids(WS, GW)) == 7
    with pytest.raises(KeyError):
        service.session(oldest[0])


def test_drift_on_list_requests() -> None:
    service = small(10)
    service.new_sessions_per_list_request = 2
    service.expire_per_list_request = 1
    page = service.list_sessions_page(WS, GW, page_num=1, page_size=5)
    assert page.total_count == 11
    body = json.loads(page.render("req-1"))
    assert body["requestId"] == "req-1"
    created = [s["createTime"] for s in body["sessions"]]
    assert created == sorted(created, reverse=True)


@settings(max_examples=40, deadline=None)
@given(
    count=st.integers(min_value=0, max_value=250),
    page_size=st.integers(min_value=1, max_value=100),
)
def test_unordered_pages_are_a_permutation(count: int, page_size: int) -> None:
    service = small(count)
    service.unordered = True
    ids = listed_ids(service, page_size)
    assert sorted(ids) == sorted(service.session_ids(WS, GW))


def test_unordered_reshuffles_per_request_when_asked() -> None:
    service = small(200)
    service.unordered = True
    first = listed_ids(service, 200)
    assert first == listed_ids(service, 200)  # stable while the list does not change
    service.reshuffle_per_request = True
    assert listed_ids(service, 200) != first


def test_quirks_switch_and_overrides() -> None:
    service = small(200, quirk_rate=1.0)
    ids = service.session_ids(WS, GW)
    quirky = [service.record(i) for i in ids]
    assert any("sparkConf" not in r for r in quirky)
    service.quirks = False
    assert all("sparkConf" in service.record(i) for i in ids)
    service.override_fields(ids[0], name="bad\x00name", info=ABSENT)
    record = service.record(ids[0])
    assert record["name"] == "bad\x00name"
    assert "info" not in record


def test_fault_config_decisions() -> None:
    faults = FaultConfig()
    rng = random.Random(1)
    assert faults.pick("ListWorkspaces", rng) is None
    faults.force("empty_page")
    faults.force("http_500", 2)
    assert faults.pick("ListWorkspaces", rng) == "http_500"  # empty_page waits for a listing
    assert faults.pick("ListLivyComputeSessions", rng) == "empty_page"
    assert faults.pick("ListLivyComputeSessions", rng) == "http_500"
    assert faults.pick("ListLivyComputeSessions", rng) is None
    faults.set_rate("error_code_200", 1.0)
    assert faults.pick("ListLivyCompute", rng) == "error_code_200"
    assert faults.pick("ListWorkspaces", rng) is None
    with pytest.raises(ValueError, match="within"):
        faults.set_rate("http_500", 1.5)
    with pytest.raises(ValueError, match="unknown fault kind"):
        faults.force("nope")  # type: ignore[arg-type]
    faults.clear()
    assert faults.snapshot()["rates"] == {}


def test_fault_rates_follow_the_seed() -> None:
    def draws(seed: int) -> list[str | None]:
        service = small(0)
        service._fault_rng.seed(seed)
        service.faults.set_rate("http_503", 0.5)
        return [service.pick_fault("ListWorkspaces") for _ in range(100)]

    assert draws(3) == draws(3)
    assert 20 < draws(3).count("http_503") < 80


def test_parse_int_bounds() -> None:
    assert parse_int({}, "pageSize", 20, 1, 100) == 20
    assert parse_int({"pageSize": "100"}, "pageSize", 20, 1, 100) == 100
    for raw in ("0", "101", "ten"):
        with pytest.raises(ServiceError) as caught:
            parse_int({"pageSize": raw}, "pageSize", 20, 1, 100)
        assert (caught.value.status, caught.value.code) == (400, "InvalidParameter")


def test_workspace_tokens_round_trip() -> None:
    service = SimulatedService(seed=0, now_ms=NOW_MS)
    for index in range(5):
        service.add_workspace(f"w-{index}")
    first = service.list_workspaces(None, 3, "")
    assert len(first["workspaces"]) == 3  # type: ignore[arg-type]
    second = service.list_workspaces(None, 3, str(first["nextToken"]))
    assert [w["workspaceId"] for w in second["workspaces"]] == ["w-3", "w-4"]  # type: ignore[attr-defined]
    assert second["nextToken"] == ""
    with pytest.raises(ServiceError):
        service.list_workspaces(None, 3, "not-a-token")


def test_stats_reset() -> None:
    service = small(5)
    service.stats.by_action["ListWorkspaces"] += 2
    service.stats.by_status[200] += 2
    assert service.stats.snapshot()["by_status"] == {"200": 2}
    service.stats.reset()
    assert service.stats.requests == 0


def test_nonce_cache_window_and_cap() -> None:
    nonces = NonceCache(ttl_s=900, max_entries=3)
    assert nonces.use("a", 0.0)
    assert not nonces.use("a", 899.0)
    assert nonces.use("a", 901.0)  # remembered for the window only
    for name in ("b", "c", "d"):
        assert nonces.use(name, 902.0)
    assert len(nonces) <= 3  # bounded: the oldest goes first
