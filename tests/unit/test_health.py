"""The /healthz decision (pure): database reachable and every target fresh."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from harvester.errors import ConfigError
from harvester.server import TargetHealth, assess_health
from harvester.settings import ServerSettings, load_settings

START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return START + timedelta(seconds=seconds)


def test_healthy_when_the_database_answers_and_every_target_is_fresh() -> None:
    targets = {
        "w-1/lc-1": TargetHealth(at(500), START, max_age_s=300),
        "w-1/lc-2": TargetHealth(at(700), START, max_age_s=300),
    }
    health = assess_health(database_ok=True, now=at(790), targets=targets)
    assert health.ok
    assert health.body == {
        "status": "ok",
        "database": "ok",
        "targets": 2,
        "stale_targets": [],
    }


def test_a_stale_target_is_named() -> None:
    targets = {
        "w-1/lc-2": TargetHealth(at(100), START, max_age_s=300),
        "w-1/lc-1": TargetHealth(at(600), START, max_age_s=300),
    }
    health = assess_health(database_ok=True, now=at(401), targets=targets)
    assert not health.ok
    assert health.body["status"] == "unhealthy"
    assert health.body["stale_targets"] == ["w-1/lc-2"]


def test_a_target_not_run_yet_gets_its_window_from_when_it_was_scheduled() -> None:
    discovered_later = at(1000)
    never = TargetHealth(None, discovered_later, max_age_s=300)
    old = TargetHealth(at(-86400), discovered_later, max_age_s=300)  # before this process
    for target in (never, old):
        assert assess_health(database_ok=True, now=at(1299), targets={"t": target}).ok
        late = assess_health(database_ok=True, now=at(1301), targets={"t": target})
        assert late.body["stale_targets"] == ["t"]


def test_an_unreachable_database_is_unhealthy_even_without_targets() -> None:
    health = assess_health(database_ok=False, now=START, targets={})
    assert not health.ok
    assert health.body["database"] == "unreachable"
    assert assess_health(database_ok=True, now=START, targets={}).ok


@pytest.mark.parametrize(
    ("listen", "address"),
    [
        ("127.0.0.1:9464", ("127.0.0.1", 9464)),
        ("10.0.0.7:0", ("10.0.0.7", 0)),
        ("[::1]:9000", ("::1", 9000)),
        ("", None),
        ("  ", None),
    ],
)
def test_listen_setting(listen: str, address: tuple[str, int] | None) -> None:
    assert ServerSettings(listen=listen).address == address


@pytest.mark.parametrize("listen", ["9464", "localhost", "host:port", "h:70000", ":80"])
def test_bad_listen_names_the_key(listen: str) -> None:
    with pytest.raises(ConfigError, match=r"HARVESTER_SERVER__LISTEN: server\.listen"):
        load_settings(None, {"HARVESTER_SERVER__LISTEN": listen})


def test_server_defaults_and_env() -> None:
    settings = load_settings(None, {})
    assert settings.server.address == ("127.0.0.1", 9464)
    assert settings.server.health_max_age is None
    env = {"HARVESTER_SERVER__LISTEN": "", "HARVESTER_SERVER__HEALTH_MAX_AGE": "2h"}
    settings = load_settings(None, env)
    assert settings.server.address is None
    assert settings.server.health_max_age == 7200.0
