"""Turn configured targets (region, workspace or gateway) into the gateways to harvest."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from harvester.api.client import ApiClient
from harvester.errors import ApiError
from harvester.records import ComputeId, Gateway, WorkspaceId
from harvester.settings import TargetSettings

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Discovery:
    """Gateways named in the configuration, gateways found through the API, and failures."""

    configured: list[Gateway] = field(default_factory=list)
    discovered: list[Gateway] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def gateways(self) -> list[Gateway]:
        return sorted({*self.configured, *self.discovered})


async def discover(client: ApiClient, targets: Sequence[TargetSettings]) -> Discovery:
    """Expand every target; a failing target is reported, the others still expand."""
    found = Discovery()
    for target in targets:
        if target.workspace_id and target.livy_compute_id:
            found.configured.append(
                Gateway(
                    target.region_id,
                    WorkspaceId(target.workspace_id),
                    ComputeId(target.livy_compute_id),
                )
            )
            continue
        try:
            if target.workspace_id:
                workspace_ids = [target.workspace_id]
            else:
                workspaces = await client.list_workspaces(target.region_id)
                workspace_ids = [str(w["workspaceId"]) for w in workspaces if w.get("workspaceId")]
                log.info(
                    "region %s has %d workspaces",
                    target.region_id,
                    len(workspace_ids),
                    extra={"target": target.region_id},
                )
            for workspace_id in workspace_ids:
                for item in await client.list_gateways(target.region_id, workspace_id):
                    compute_id = item.get("computeId")
                    if not compute_id:
                        continue
                    found.discovered.append(
                        Gateway(
                            target.region_id,
                            WorkspaceId(workspace_id),
                            ComputeId(str(compute_id)),
                            name=str(item["name"]) if item.get("name") else None,
                        )
                    )
        except ApiError as exc:
            found.errors.append(exc.message)
            log.error("discovery failed: %s", exc.message, extra={"target": target.region_id})
    return found
