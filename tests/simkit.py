"""What tests that harvest from the simulator share: credentials, region, settings, listing."""

from __future__ import annotations

import json
import os
from typing import Any

from harvester.api.credentials import StaticCredentials
from harvester.api.signing import Credentials
from harvester.settings import Settings, load_settings
from harvester.simulator import DEMO_ACCESS_KEY_ID, DEMO_ACCESS_KEY_SECRET, SimulatedService

REGION = "cn-hangzhou"
DEMO = StaticCredentials(Credentials(DEMO_ACCESS_KEY_ID, DEMO_ACCESS_KEY_SECRET))


def inherited_env() -> dict[str, str]:
    """This process's environment for a `harvester` subprocess, without any HARVESTER_ or
    ALIBABA_ variable of the machine's own: only what a test sets reaches the child."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("HARVESTER_", "ALIBABA_"))}


def cli_env(**values: str) -> dict[str, str]:
    """The environment of a `harvester` subprocess: no ECS metadata lookup, the demo
    credentials, the whole region as target; `values` on top."""
    return {
        **inherited_env(),
        "ALIBABA_CLOUD_ECS_METADATA_DISABLED": "true",
        "ALIBABA_CLOUD_ACCESS_KEY_ID": DEMO_ACCESS_KEY_ID,
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": DEMO_ACCESS_KEY_SECRET,
        "HARVESTER_TARGETS": json.dumps([{"region_id": REGION}]),
        **values,
    }


def listed(service: SimulatedService) -> dict[str, tuple[str, str, dict[str, Any]]]:
    """Every session the API lists: id -> (workspace, gateway, record as sent)."""
    return {
        session_id: (workspace_id, compute_id, service.record(session_id))
        for workspace_id in service.workspace_ids(REGION)
        for compute_id in service.gateway_ids(workspace_id)
        for session_id in service.session_ids(workspace_id, compute_id)
    }


def settings_for(database_url: str, endpoint: str, **env: str) -> Settings:
    """Settings harvesting the whole region from the simulator, unthrottled; `env` on top."""
    return load_settings(
        None,
        {
            "HARVESTER_DATABASE_URL": database_url,
            "HARVESTER_API__ENDPOINT": endpoint,
            "HARVESTER_API__REQUESTS_PER_SECOND": "1000",
            "HARVESTER_TARGETS": json.dumps([{"region_id": REGION}]),
            **env,
        },
    )
