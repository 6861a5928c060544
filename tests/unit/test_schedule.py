"""The daemon's pure decisions: which schedule a gateway gets, what vanished, when it is stale."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from harvester.records import ComputeId, Gateway, WorkspaceId
from harvester.scheduler import (
    JobSchedule,
    harvest_trigger,
    health_max_age_s,
    misfire_grace_s,
    owning_target,
    period_s,
    schedule_for,
    vanished_gateways,
)
from harvester.settings import Settings, TargetSettings, load_settings

NOW = datetime(2026, 3, 1, 12, 0, 30, tzinfo=UTC)


def gateway(workspace: str = "w-1", compute: str = "lc-1", region: str = "cn-hangzhou") -> Gateway:
    return Gateway(region, WorkspaceId(workspace), ComputeId(compute))


def settings_with(targets: list[dict[str, object]], **schedule: str) -> Settings:
    env = {"HARVESTER_TARGETS": json.dumps(targets)}
    env |= {f"HARVESTER_SCHEDULE__{key.upper()}": value for key, value in schedule.items()}
    return load_settings(None, env)


def test_without_override_every_gateway_follows_schedule_section() -> None:
    settings = settings_with([{"region_id": "cn-hangzhou"}], interval="2m", jitter="5s")
    assert schedule_for(gateway(), settings) == JobSchedule(interval_s=120.0, jitter_s=5.0)
    settings = settings_with([{"region_id": "cn-hangzhou"}], cron="*/10 * * * *")
    assert schedule_for(gateway(), settings).cron == "*/10 * * * *"


def test_discovered_gateway_inherits_the_most_specific_target_override() -> None:
    settings = settings_with(
        [
            {"region_id": "cn-hangzhou", "interval": "1h"},
            {"region_id": "cn-hangzhou", "workspace_id": "w-2", "cron": "0 * * * *"},
            {"region_id": "cn-hangzhou", "workspace_id": "w-2", "livy_compute_id": "lc-9",
             "interval": "30s"},
            {"region_id": "cn-beijing", "workspace_id": "w-3"},
        ],
        interval="5m", cron="",
    )  # fmt: skip
    assert schedule_for(gateway("w-1"), settings).interval_s == 3600.0  # found by the region
    assert schedule_for(gateway("w-2", "lc-1"), settings).cron == "0 * * * *"
    assert schedule_for(gateway("w-2", "lc-9"), settings) == JobSchedule(30.0, 30.0)
    beijing = schedule_for(gateway("w-3", region="cn-beijing"), settings)
    assert beijing == JobSchedule(300.0, 30.0)  # its target overrides nothing
    assert owning_target(gateway(region="eu-central-1"), settings.targets) is None


def test_target_cron_beats_a_global_interval_and_global_cron_loses_to_target_interval() -> None:
    settings = settings_with([{"region_id": "cn-hangzhou", "interval": "90s"}], cron="*/5 * * * *")
    assert schedule_for(gateway(), settings) == JobSchedule(interval_s=90.0, jitter_s=30.0)


def test_target_override_is_validated_like_the_schedule_section() -> None:
    assert TargetSettings(region_id="r", interval="1d").interval == 86400.0  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not a crontab expression"):
        TargetSettings(region_id="r", cron="every minute")
    with pytest.raises(ValueError, match="not a duration"):
        TargetSettings(region_id="r", interval="soon")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="interval or cron, not both"):
        TargetSettings(region_id="r", interval=60, cron="* * * * *")


def test_triggers_carry_interval_cron_and_jitter() -> None:
    interval = harvest_trigger(JobSchedule(interval_s=60.0, jitter_s=5.0))
    assert isinstance(interval, IntervalTrigger)
    assert interval.interval == timedelta(seconds=60)
    assert interval.jitter == 5.0
    cron = harvest_trigger(JobSchedule(interval_s=60.0, jitter_s=0.0, cron="*/15 * * * *"))
    assert isinstance(cron, CronTrigger)
    assert cron.jitter is None
    assert cron.get_next_fire_time(None, NOW) == datetime(2026, 3, 1, 12, 15, tzinfo=UTC)


def test_period_misfire_grace_and_health_window() -> None:
    hourly = JobSchedule(interval_s=60.0, jitter_s=10.0, cron="0 * * * *")
    assert period_s(hourly, NOW) == 3600.0
    assert misfire_grace_s(hourly, NOW) == 3600
    assert health_max_age_s(hourly, None, NOW) == 3 * 3600 + 10
    fast = JobSchedule(interval_s=1.0, jitter_s=0.0)
    assert misfire_grace_s(fast, NOW) == 1
    assert health_max_age_s(fast, None, NOW) == 60.0  # never shorter than a minute
    assert health_max_age_s(fast, 7200.0, NOW) == 7200.0  # [server] health_max_age wins


def test_vanished_only_within_targets_whose_discovery_succeeded() -> None:
    region = TargetSettings(region_id="cn-hangzhou")
    workspace = TargetSettings(region_id="cn-beijing", workspace_id="w-b")
    known = [
        gateway("w-1", "lc-1"),
        gateway("w-1", "lc-2"),
        gateway("w-b", "lc-3", region="cn-beijing"),
        gateway("w-x", "lc-4", region="cn-shanghai"),  # no target covers it any more
    ]
    found = {"w-1/lc-1"}
    assert vanished_gateways(known, found, [region, workspace]) == [
        gateway("w-b", "lc-3", region="cn-beijing"),
        gateway("w-1", "lc-2"),
    ]
    # cn-beijing's discovery failed: its gateways stay
    assert vanished_gateways(known, found, [region]) == [gateway("w-1", "lc-2")]
    assert vanished_gateways(known + known, found, []) == []
