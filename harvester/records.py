"""Plain data that flows between the layers: targets, session records, pages (pure)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final, Literal, NewType

SessionId = NewType("SessionId", str)
WorkspaceId = NewType("WorkspaceId", str)
ComputeId = NewType("ComputeId", str)

#: States after which a session never changes again (DESIGN §3). Anything else,
#: including states the service may add later, counts as still moving.
TERMINAL_STATES: Final = frozenset({"terminated", "error"})

RunMode = Literal["full", "incremental"]
#: `skipped` (another process holds the gateway's lock) is reported, never stored
RunStatus = Literal["running", "succeeded", "failed", "interrupted", "skipped"]


@dataclass(frozen=True, slots=True, order=True)
class Gateway:
    """One Livy Gateway: the unit that is harvested, locked and checkpointed."""

    region_id: str
    workspace_id: WorkspaceId
    compute_id: ComputeId
    name: str | None = field(default=None, compare=False)

    @property
    def key(self) -> str:
        return f"{self.workspace_id}/{self.compute_id}"


@dataclass(slots=True)
class SessionRecord:
    """One Livy session, cleaned for storage; `raw` keeps the record as received.

    Times stay in epoch milliseconds as the API sends them; the store converts them.
    """

    session_id: SessionId
    workspace_id: WorkspaceId
    compute_id: ComputeId
    region_id: str | None
    name: str | None
    state: str | None
    spark_conf: dict[str, Any] | None
    spark_conf_raw: str | None
    proxy_user: str | None
    queue: str | None
    info: str | None
    web_ui: str | None
    create_time_ms: int | None
    end_time_ms: int | None
    cu_hours: float | None
    vcore_seconds: int | None
    mb_seconds: int | None
    raw: dict[str, Any]


@dataclass(slots=True)
class NormalizedPage:
    """A page of records ready to store, and what had to be cleaned or skipped on the way."""

    records: list[SessionRecord]
    #: records without a usable sessionId (not stored)
    skipped: int = 0
    #: a sessionId that appeared twice in the page (kept once)
    duplicates: int = 0
    #: field values that could not be parsed and were stored as NULL
    invalid_values: int = 0
    #: human-readable notes on what was skipped or cleaned, for the log
    problems: list[str] = field(default_factory=list)
