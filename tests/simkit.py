"""What tests that harvest from the simulator share: credentials, region, settings, listing."""

from __future__ import annotations

import json
from typing import Any

from harvester.api.credentials import StaticCredentials
from harvester.api.signing import Credentials
from harvester.settings import Settings, load_settings
from harvester.simulator import DEMO_ACCESS_KEY_ID, DEMO_ACCESS_KEY_SECRET, SimulatedService

REGION = "cn-hangzhou"
DEMO = StaticCredentials(Credentials(DEMO_ACCESS_KEY_ID, DEMO_ACCESS_KEY_SECRET))


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
