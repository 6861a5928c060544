"""The simulated EMR Serverless Spark service: data, time, quirks and fault decisions (pure).

Nothing here does I/O, so tests can drive the service directly (add sessions, move the
clock, force faults) and the HTTP layer in `server.py` stays thin. Everything random comes
from `random.Random` streams seeded from one seed, so a run can be replayed exactly.

Speed matters (benchmarks pull 100,000 sessions through the simulator): each session's
JSON is rendered once and cached until the session changes, and a page is the join of
cached fragments, so answering a page costs O(page size), never O(sessions).
"""

from __future__ import annotations

import base64
import binascii
import bisect
import json
import math
import random
import string
import time
from collections import Counter, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Final, Literal, get_args

API_VERSION: Final = "2023-08-08"
DEFAULT_REGION: Final = "cn-hangzhou"

Action = Literal["ListLivyComputeSessions", "ListWorkspaces", "ListLivyCompute"]
ACTIONS: Final[tuple[Action, ...]] = get_args(Action)

STARTING: Final = "starting"
RUNNING: Final = "running"
TERMINATING: Final = "terminating"
TERMINATED: Final = "terminated"
ERROR: Final = "error"
KNOWN_STATES: Final = (STARTING, RUNNING, TERMINATING, TERMINATED, ERROR)
ACTIVE_STATES: Final = frozenset({STARTING, RUNNING, TERMINATING})
FINAL_STATES: Final = frozenset({TERMINATED, ERROR})

FaultKind = Literal[
    "http_500",
    "http_502_html",
    "http_503",
    "throttle_400",
    "throttle_429",
    "slow",
    "disconnect",
    "disconnect_mid_body",
    "truncated_json",
    "malformed_json",
    "empty_page",
    "error_code_200",
    "error_body_200",
]
FAULT_KINDS: Final[tuple[FaultKind, ...]] = get_args(FaultKind)
# Faults that only make sense for one operation; elsewhere they are never drawn, and a
# forced one waits in the queue for a request it applies to.
_FAULT_ONLY_FOR: Final[dict[str, Action]] = {
    "empty_page": "ListLivyComputeSessions",
    "error_code_200": "ListLivyCompute",
    # ListLivyCompute reports errors in its own `code` field (error_code_200 above).
    "error_body_200": "ListLivyComputeSessions",
}

Quirk = Literal[
    "numbers_as_strings",
    "info_null_string",
    "spark_conf_invalid",
    "spark_conf_absent",
    "end_time_absent",
    "no_compute_id",
    "unicode_name",
    "extra_field",
]
QUIRKS: Final[tuple[Quirk, ...]] = get_args(Quirk)

USERS: Final = ("alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi")
QUEUES: Final = ("root_queue", "dev_queue", "etl_queue", "adhoc_queue")
_JOB_KINDS: Final = ("notebook", "etl_orders", "adhoc", "jdbc", "dbt_run", "ml_features")
_ERROR_INFOS: Final = (
    "java.lang.OutOfMemoryError: Java heap space",
    "Session killed by user",
    "org.apache.spark.SparkException: Job aborted due to stage failure",
    "Driver exited with code 1",
)
_ENCODER: Final = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
#: for text UTF-8 cannot carry (a lone surrogate set by a test): escapes it as the service would
_ASCII_ENCODER: Final = json.JSONEncoder(ensure_ascii=True, separators=(",", ":"))
_TERMINATING_MS: Final = 20_000
_MINUTE_MS: Final = 60_000
_DAY_MS: Final = 86_400_000


class _Absent(Enum):
    ABSENT = "absent"


ABSENT: Final = _Absent.ABSENT
"""Value for `override_fields` that removes a field from the rendered record."""


class ServiceError(Exception):
    """An error answer of the service: HTTP status, `Code` and `Message`."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


@dataclass(slots=True, eq=False)
class LivySession:
    """One Livy session as the service knows it, with its planned future."""

    session_id: str
    workspace_id: str
    compute_id: str
    region_id: str
    name: str
    queue: str
    spark_conf: str
    web_ui: str
    create_time_ms: int
    started_ms: int  # when starting turns into running
    planned_end_ms: int | None  # when running turns into terminating; None = until finished
    outcome: str  # the final state reached on its own: terminated or error
    error_info: str
    vcores: int
    memory_mb: int
    quirk: Quirk | None
    state: str = STARTING
    end_time_ms: int = 0
    info: str = ""
    cu_hours: float = 0.0
    vcore_seconds: int = 0
    mb_seconds: int = 0
    overrides: dict[str, object] = field(default_factory=dict)
    fragment: bytes | None = None
    fragment_generation: int = -1


@dataclass(slots=True, eq=False)
class Gateway:
    """A Livy Gateway (livy compute) and its sessions, oldest first."""

    compute_id: str
    workspace_id: str
    name: str
    queue: str
    created_by: str
    gmt_create_ms: int
    sessions: list[LivySession] = field(default_factory=list)
    version: int = 0  # bumped whenever the list changes; keys the unordered permutation
    permutation: tuple[int, int, int, int] | None = None  # (version, n, multiplier, offset)


@dataclass(slots=True, eq=False)
class Workspace:
    """A workspace in one region, with its gateways."""

    workspace_id: str
    name: str
    region_id: str
    create_time_ms: int
    gateways: dict[str, Gateway] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SessionsPage:
    """One ListLivyComputeSessions answer, as pre-rendered fragments."""

    total_count: int
    page_num: int
    page_size: int
    fragments: list[bytes]

    def render(self, request_id: str) -> bytes:
        """The response body: joins cached session fragments, no per-session encoding."""
        head = (
            f'{{"requestId":{json.dumps(request_id)},"totalCount":{self.total_count},'
            f'"pageNum":{self.page_num},"pageSize":{self.page_size},"sessions":['
        ).encode()
        return head + b",".join(self.fragments) + b"]}"


@dataclass
class FaultConfig:
    """Which faults the service injects: rates per kind, a forced queue, added latency."""

    rates: dict[FaultKind, float] = field(default_factory=dict)
    delay_s: float = 0.0
    slow_s: float = 5.0
    retry_after_ms: int = 1000
    forced: deque[FaultKind] = field(default_factory=deque)

    def force(self, kind: FaultKind, count: int = 1) -> None:
        """The next `count` API requests the fault applies to get `kind`."""
        _check_fault_kind(kind)
        self.forced.extend([kind] * count)

    def set_rate(self, kind: FaultKind, rate: float) -> None:
        """Probability per API request of `kind` (0 turns it off)."""
        _check_fault_kind(kind)
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"fault rate must be within 0..1, got {rate}")
        if rate:
            self.rates[kind] = rate
        else:
            self.rates.pop(kind, None)

    def clear(self) -> None:
        """No faults, no latency."""
        self.rates.clear()
        self.forced.clear()
        self.delay_s = 0.0

    def pick(self, action: Action, rng: random.Random) -> FaultKind | None:
        """The fault for one request of `action`: forced ones first, then one random draw."""
        for index, kind in enumerate(self.forced):
            if _fault_applies(kind, action):
                del self.forced[index]
                return kind
        if not self.rates:
            return None
        draw = rng.random()
        cumulative = 0.0
        for kind in FAULT_KINDS:
            rate = self.rates.get(kind, 0.0)
            if rate and _fault_applies(kind, action):
                cumulative += rate
                if draw < cumulative:
                    return kind
        return None

    def snapshot(self) -> dict[str, object]:
        """A JSON-ready view, for the admin endpoint."""
        return {
            "rates": dict(self.rates),
            "forced": list(self.forced),
            "delay_s": self.delay_s,
            "slow_s": self.slow_s,
            "retry_after_ms": self.retry_after_ms,
        }


def _check_fault_kind(kind: str) -> None:
    if kind not in FAULT_KINDS:
        raise ValueError(f"unknown fault kind {kind!r}; known: {', '.join(FAULT_KINDS)}")


def _fault_applies(kind: FaultKind, action: Action) -> bool:
    only = _FAULT_ONLY_FOR.get(kind)
    return only is None or only == action


@dataclass
class Stats:
    """Counts of API requests, readable (and resettable) by tests and the admin endpoint."""

    by_action: Counter[str] = field(default_factory=Counter)
    by_status: Counter[int] = field(default_factory=Counter)  # 0 = closed without an answer
    faults: Counter[str] = field(default_factory=Counter)
    sessions_served: int = 0

    @property
    def requests(self) -> int:
        """API requests received (admin endpoints not included)."""
        return sum(self.by_action.values())

    def reset(self) -> None:
        """Start counting afresh."""
        self.by_action.clear()
        self.by_status.clear()
        self.faults.clear()
        self.sessions_served = 0

    def snapshot(self) -> dict[str, object]:
        """A JSON-ready view (status keys become strings)."""
        return {
            "requests": self.requests,
            "by_action": dict(self.by_action),
            "by_status": {str(status): n for status, n in sorted(self.by_status.items())},
            "faults": dict(self.faults),
            "sessions_served": self.sessions_served,
        }


def parse_int(
    query: Mapping[str, str], name: str, default: int, low: int, high: int | None = None
) -> int:
    """An integer query parameter within bounds, else the service's 400 InvalidParameter."""
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ServiceError(
            400, "InvalidParameter", f"The parameter {name} must be an integer."
        ) from None
    if value < low or (high is not None and value > high):
        limit = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise ServiceError(400, "InvalidParameter", f"The parameter {name} must be {limit}.")
    return value


class SimulatedService:
    """Regions → workspaces → gateways → sessions, a clock, quirks, drift, faults, stats.

    The clock starts at wall-clock time (or `now_ms`) and only moves with `advance()`, so
    tests are deterministic; the CLI calls `advance()` every second to make time pass.
    """

    def __init__(
        self,
        seed: int = 0,
        *,
        now_ms: int | None = None,
        region_id: str = DEFAULT_REGION,
        quirks: bool = True,
        quirk_rate: float = 0.05,
    ) -> None:
        self.seed = seed
        self.default_region = region_id
        self.quirk_rate = quirk_rate
        self.unordered = False
        """List sessions in a deterministic shuffle instead of newest first."""
        self.reshuffle_per_request = False
        """With `unordered`: a new shuffle on every request, not only when the list changes."""
        self.new_sessions_per_list_request = 0
        """Drift: sessions added at the head of a gateway before each of its list answers."""
        self.expire_per_list_request = 0
        """Drift: oldest sessions forgotten before each list answer of the gateway."""
        self.new_sessions_per_minute = 0.0
        """Sessions started per simulated minute by `advance()`, spread over gateways."""
        self.faults = FaultConfig()
        self.broken_gateways: set[str] = set()
        """Gateway (compute) ids whose listing always answers HTTP 503: a target that
        never recovers, for tests of bounded retries."""
        self.stats = Stats()
        self._now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        self._rng = random.Random(seed)
        # Workspaces and gateways draw from their own stream, so their ids do not depend
        # on how many sessions were generated before them.
        self._topology_rng = random.Random(f"{seed}/topology")
        self._fault_rng = random.Random(f"{seed}/faults")
        self._order_rng = random.Random(f"{seed}/order")
        self._quirks = quirks
        self._generation = 0  # bumped when rendering rules change: invalidates every fragment
        self._workspaces: dict[str, Workspace] = {}
        self._sessions: dict[str, LivySession] = {}
        self._active: dict[str, LivySession] = {}
        self._new_session_credit = 0.0

    # -- construction -------------------------------------------------------------------

    @classmethod
    def generate(
        cls,
        seed: int = 0,
        *,
        workspaces: int = 2,
        gateways_per_workspace: int = 2,
        sessions_per_gateway: int = 500,
        empty_gateways: int = 1,
        region_id: str = DEFAULT_REGION,
        now_ms: int | None = None,
        quirks: bool = True,
    ) -> SimulatedService:
        """A populated service; `empty_gateways` extra gateways without sessions are added."""
        service = cls(seed, now_ms=now_ms, region_id=region_id, quirks=quirks)
        workspace_ids = [service.add_workspace() for _ in range(workspaces)]
        for workspace_id in workspace_ids:
            for _ in range(gateways_per_workspace):
                compute_id = service.add_gateway(workspace_id)
                service.add_sessions(workspace_id, compute_id, sessions_per_gateway)
        for index in range(empty_gateways if workspace_ids else 0):
            service.add_gateway(workspace_ids[index % len(workspace_ids)])
        return service

    def add_workspace(
        self, workspace_id: str | None = None, name: str | None = None, region_id: str | None = None
    ) -> str:
        """Add a workspace (random `w-…` id unless given); returns its id."""
        workspace_id = workspace_id or f"w-{self._topology_rng.getrandbits(64):016x}"
        if workspace_id in self._workspaces:
            raise ValueError(f"workspace {workspace_id} exists")
        index = len(self._workspaces) + 1
        self._workspaces[workspace_id] = Workspace(
            workspace_id=workspace_id,
            name=name or f"analytics-{index}",
            region_id=region_id or self.default_region,
            create_time_ms=self._now_ms - self._topology_rng.randrange(30, 400) * _DAY_MS,
        )
        return workspace_id

    def add_gateway(
        self,
        workspace_id: str,
        compute_id: str | None = None,
        name: str | None = None,
        queue: str = "root_queue",
    ) -> str:
        """Add a Livy Gateway to a workspace (random `lc-…` id unless given); returns its id."""
        workspace = self._workspace(workspace_id)
        alphabet = string.ascii_lowercase + string.digits
        compute_id = compute_id or "lc-" + "".join(self._topology_rng.choices(alphabet, k=16))
        if compute_id in workspace.gateways:
            raise ValueError(f"gateway {compute_id} exists in {workspace_id}")
        workspace.gateways[compute_id] = Gateway(
            compute_id=compute_id,
            workspace_id=workspace_id,
            name=name or f"gateway-{len(workspace.gateways) + 1}",
            queue=queue,
            created_by=self._topology_rng.choice(USERS),
            gmt_create_ms=workspace.create_time_ms + self._topology_rng.randrange(1, 20) * _DAY_MS,
        )
        return compute_id

    def add_sessions(
        self,
        workspace_id: str,
        compute_id: str,
        count: int,
        *,
        state: str | None = None,
        spread_days: float = 7.0,
        create_time_ms: int | None = None,
    ) -> list[str]:
        """Add realistic sessions created over the past `spread_days`; returns their ids.

        Without `state`, each session's state follows from its age and planned duration
        (most old ones terminated, some error, recent ones running or starting). With
        `state`, every session is put in that state (unknown states are kept as given).
        """
        gateway = self._gateway(workspace_id, compute_id)
        created: list[LivySession] = []
        for _ in range(count):
            if create_time_ms is not None:
                create_ms = create_time_ms
            elif state in ACTIVE_STATES:
                # Active sessions are recent; a 'starting' one days old would look wrong.
                window_ms = 30_000 if state == STARTING else 2 * 3_600_000
                create_ms = self._now_ms - self._rng.randrange(window_ms)
            else:
                create_ms = self._now_ms - int(self._rng.random() * spread_days * _DAY_MS)
            session = self._new_session(gateway, create_ms)
            self._evolve(session)
            if state is not None and session.state != state:
                self._force_state(session, state)
            created.append(session)
        self._insert(gateway, created)
        return [session.session_id for session in created]

    # -- reading --------------------------------------------------------------------------

    @property
    def now_ms(self) -> int:
        """The simulated clock, epoch milliseconds."""
        return self._now_ms

    @property
    def quirks(self) -> bool:
        """Whether the odd-but-valid records a real client must cope with are sent."""
        return self._quirks

    @quirks.setter
    def quirks(self, enabled: bool) -> None:
        if enabled != self._quirks:
            self._quirks = enabled
            self._generation += 1

    def session(self, session_id: str) -> LivySession:
        """A session by id (KeyError if the service does not know it, or forgot it)."""
        return self._sessions[session_id]

    def session_ids(self, workspace_id: str, compute_id: str) -> list[str]:
        """A gateway's session ids, newest first (the default listing order)."""
        sessions = self._gateway(workspace_id, compute_id).sessions
        return [session.session_id for session in reversed(sessions)]

    def record(self, session_id: str) -> dict[str, object]:
        """A session exactly as the API sends it (quirks and overrides applied)."""
        result: dict[str, object] = json.loads(self._fragment(self._sessions[session_id]))
        return result

    def workspace_ids(self, region_id: str | None = None) -> list[str]:
        """Workspace ids, optionally of one region only."""
        return [
            w.workspace_id
            for w in self._workspaces.values()
            if region_id is None or w.region_id == region_id
        ]

    def gateway_ids(self, workspace_id: str) -> list[str]:
        """A workspace's gateway ids."""
        return list(self._workspace(workspace_id).gateways)

    def summary(self) -> dict[str, object]:
        """Counts per gateway and state (O(sessions): for admin and tests, not requests)."""
        workspaces = []
        for workspace in self._workspaces.values():
            gateways = []
            for gateway in workspace.gateways.values():
                by_state = Counter(session.state for session in gateway.sessions)
                gateways.append(
                    {
                        "compute_id": gateway.compute_id,
                        "total": len(gateway.sessions),
                        "by_state": dict(sorted(by_state.items())),
                    }
                )
            workspaces.append(
                {
                    "workspace_id": workspace.workspace_id,
                    "region_id": workspace.region_id,
                    "gateways": gateways,
                }
            )
        return {"now_ms": self._now_ms, "sessions": len(self._sessions), "workspaces": workspaces}

    # -- changing ------------------------------------------------------------------------

    def set_state(self, session_id: str, state: str) -> None:
        """Put a session in `state` now (end time and usage follow; unknown states kept)."""
        self._force_state(self._sessions[session_id], state)

    def finish(self, session_id: str, state: str = TERMINATED) -> None:
        """End a session now: final state, endTime set, usage final (no-op if ended)."""
        if state not in FINAL_STATES:
            raise ValueError(f"finish state must be one of {sorted(FINAL_STATES)}")
        session = self._sessions[session_id]
        if session.state not in FINAL_STATES:
            self._force_state(session, state)

    def override_fields(self, session_id: str, **fields: object) -> None:
        """Send these raw values for a session (ABSENT removes a field); for edge-case tests.

        This is the only way to send values a correct client could not store (NUL
        characters, wrong types): quirks never do.
        """
        session = self._sessions[session_id]
        session.overrides.update(fields)
        session.fragment = None

    def expire_oldest(self, workspace_id: str, compute_id: str, count: int) -> list[str]:
        """The service forgets a gateway's `count` oldest sessions; returns their ids."""
        gateway = self._gateway(workspace_id, compute_id)
        gone = gateway.sessions[:count]
        if gone:
            del gateway.sessions[:count]
            gateway.version += 1
        for session in gone:
            del self._sessions[session.session_id]
            self._active.pop(session.session_id, None)
        return [session.session_id for session in gone]

    def advance(self, seconds: float) -> None:
        """Move the clock: sessions start, run (usage grows), finish; new ones may appear."""
        if seconds < 0:
            raise ValueError("time only moves forward")
        before_ms = self._now_ms
        self._now_ms += round(seconds * 1000)
        self._spawn(before_ms, seconds)
        for session in list(self._active.values()):
            self._evolve(session)

    # -- API operations (used by the HTTP layer) -----------------------------------------

    def list_sessions_page(
        self,
        workspace_id: str,
        compute_id: str,
        *,
        page_num: int,
        page_size: int,
        region_id: str | None = None,
        empty: bool = False,
    ) -> SessionsPage:
        """One page of a gateway's sessions; applies per-request drift first."""
        gateway = self._gateway(workspace_id, compute_id, region_id=region_id, api=True)
        if self.new_sessions_per_list_request:
            newest = gateway.sessions[-1].create_time_ms if gateway.sessions else 0
            fresh = []
            for index in range(self.new_sessions_per_list_request):
                create_ms = max(self._now_ms, newest + 1 + index)
                fresh.append(self._new_session(gateway, create_ms))
            self._insert(gateway, fresh)
        if self.expire_per_list_request:
            self.expire_oldest(workspace_id, compute_id, self.expire_per_list_request)
        sessions = gateway.sessions
        total = len(sessions)
        start = (page_num - 1) * page_size
        fragments: list[bytes] = []
        if not empty and start < total:
            stop = min(start + page_size, total)
            if self.unordered:
                multiplier, offset = self._permutation(gateway)
                picked = [
                    sessions[total - 1 - (multiplier * i + offset) % total]
                    for i in range(start, stop)
                ]
            else:
                picked = sessions[total - stop : total - start]
                picked.reverse()
            fragments = [self._fragment(session) for session in picked]
            self.stats.sessions_served += len(fragments)
        return SessionsPage(total, page_num, page_size, fragments)

    def list_workspaces(
        self, region_id: str | None, max_results: int, next_token: str
    ) -> dict[str, object]:
        """A ListWorkspaces body without requestId (token pagination)."""
        region = region_id or self.default_region
        matching = [w for w in self._workspaces.values() if w.region_id == region]
        offset = _decode_token(next_token) if next_token else 0
        page = matching[offset : offset + max_results]
        more = offset + max_results < len(matching)
        return {
            "workspaces": [self._workspace_record(w) for w in page],
            "nextToken": _encode_token(offset + max_results) if more else "",
            "maxResults": max_results,
            "totalCount": len(matching),
        }

    def list_livy_computes(
        self, workspace_id: str, region_id: str | None
    ) -> list[dict[str, object]]:
        """The `livyComputes` of a ListLivyCompute body."""
        workspace = self._workspace(workspace_id, region_id=region_id, api=True)
        return [
            {
                "computeId": gateway.compute_id,
                "name": gateway.name,
                "status": "Running",
                "queueName": gateway.queue,
                "createdBy": gateway.created_by,
                "gmtCreate": gateway.gmt_create_ms,
                "startTime": gateway.gmt_create_ms + 60_000,
                "endpoint": f"https://{gateway.compute_id}.{workspace.region_id}.livy.example",
                "endpointInner": f"http://{gateway.compute_id}-vpc.{workspace.region_id}.livy",
            }
            for gateway in workspace.gateways.values()
        ]

    def pick_fault(self, action: Action) -> FaultKind | None:
        """The fault (if any) for the next request of `action`, from the seeded stream."""
        kind = self.faults.pick(action, self._fault_rng)
        if kind is not None:
            self.stats.faults[kind] += 1
        return kind

    # -- internals ----------------------------------------------------------------------

    def _workspace(
        self, workspace_id: str, *, region_id: str | None = None, api: bool = False
    ) -> Workspace:
        workspace = self._workspaces.get(workspace_id)
        if workspace is None or (region_id and workspace.region_id != region_id):
            if api:
                raise ServiceError(
                    404, "Workspace.NotFound", f"The workspace {workspace_id} does not exist."
                )
            raise KeyError(workspace_id)
        return workspace

    def _gateway(
        self,
        workspace_id: str,
        compute_id: str,
        *,
        region_id: str | None = None,
        api: bool = False,
    ) -> Gateway:
        gateway = self._workspace(workspace_id, region_id=region_id, api=api).gateways.get(
            compute_id
        )
        if gateway is None:
            if api:
                raise ServiceError(
                    404, "LivyCompute.NotFound", f"The livy compute {compute_id} does not exist."
                )
            raise KeyError(compute_id)
        return gateway

    def _new_session(self, gateway: Gateway, create_ms: int) -> LivySession:
        rng = self._rng
        session_id = f"ls-{rng.getrandbits(64):016x}"
        while session_id in self._sessions:
            session_id = f"ls-{rng.getrandbits(64):016x}"
        user = rng.choice(USERS)
        name = f"{user}-{rng.choice(_JOB_KINDS)}-{rng.randrange(10_000)}"
        executors = rng.choice((1, 2, 2, 4, 4, 8, 16))
        executor_cores = rng.choice((1, 2, 2, 4))
        executor_memory_gb = executor_cores * rng.choice((2, 4, 4, 8))
        driver_cores = rng.choice((1, 2))
        driver_memory_gb = driver_cores * 4
        queue = gateway.queue if rng.random() < 0.8 else rng.choice(QUEUES)
        spark_conf = json.dumps(
            {
                "spark.driver.cores": str(driver_cores),
                "spark.driver.memory": f"{driver_memory_gb}g",
                "spark.executor.cores": str(executor_cores),
                "spark.executor.memory": f"{executor_memory_gb}g",
                "spark.executor.instances": str(executors),
                "proxyUser": user,
            },
            separators=(",", ":"),
        )
        started_ms = create_ms + rng.randrange(5_000, 90_000)
        outcome = ERROR if rng.random() < 0.1 else TERMINATED
        kind_draw = rng.random()
        if kind_draw < 0.002:
            planned_end_ms: int | None = None  # long-lived, until someone stops it
        elif kind_draw < 0.03:
            planned_end_ms = started_ms + rng.randrange(6 * 3_600_000, 3 * _DAY_MS)
        elif outcome == ERROR and rng.random() < 0.3:
            planned_end_ms = started_ms  # failed right at start
        else:
            # Median ~15 min, a long tail of multi-hour jobs, capped at two days.
            duration_s = min(rng.lognormvariate(math.log(900), 1.3), 2 * 86_400)
            planned_end_ms = started_ms + int(duration_s * 1000)
        quirk = rng.choice(QUIRKS) if rng.random() < self.quirk_rate else None
        workspace = self._workspaces[gateway.workspace_id]
        return LivySession(
            session_id=session_id,
            workspace_id=gateway.workspace_id,
            compute_id=gateway.compute_id,
            region_id=workspace.region_id,
            name=name,
            queue=queue,
            spark_conf=spark_conf,
            web_ui=(
                f"https://emr-serverless-spark.console.aliyun.com/{workspace.region_id}"
                f"/{gateway.workspace_id}/livy/{gateway.compute_id}/{session_id}/sparkui"
            ),
            create_time_ms=create_ms,
            started_ms=started_ms,
            planned_end_ms=planned_end_ms,
            outcome=outcome,
            error_info=rng.choice(_ERROR_INFOS),
            vcores=executors * executor_cores + driver_cores,
            memory_mb=(executors * executor_memory_gb + driver_memory_gb) * 1024,
            quirk=quirk,
        )

    def _insert(self, gateway: Gateway, sessions: Iterable[LivySession]) -> None:
        """Add sessions to the gateway list, keeping it ordered by createTime."""
        added = sorted(sessions, key=lambda s: s.create_time_ms)
        if not added:
            return
        existing = gateway.sessions
        if not existing or existing[-1].create_time_ms <= added[0].create_time_ms:
            existing.extend(added)
        elif len(added) > 64:
            existing.extend(added)
            existing.sort(key=lambda s: s.create_time_ms)  # stable: ties keep insertion order
        else:
            for session in added:
                bisect.insort_right(existing, session, key=lambda s: s.create_time_ms)
        gateway.version += 1
        for session in added:
            self._fragment(session)  # render now, so the first listing is as fast as the next
            self._sessions[session.session_id] = session
            if session.state in ACTIVE_STATES:
                self._active[session.session_id] = session

    def _spawn(self, before_ms: int, seconds: float) -> None:
        """Sessions started by users while the clock moved from `before_ms` to now."""
        self._new_session_credit += self.new_sessions_per_minute * seconds / 60
        count = int(self._new_session_credit)
        if not count:
            return
        self._new_session_credit -= count
        gateways = [g for w in self._workspaces.values() for g in w.gateways.values()]
        busy = [g for g in gateways if g.sessions] or gateways
        if not busy:
            return
        span_ms = max(self._now_ms - before_ms, 1)
        for _ in range(count):
            gateway = self._rng.choice(busy)
            create_ms = before_ms + 1 + self._rng.randrange(span_ms)
            self._insert(gateway, [self._new_session(gateway, create_ms)])

    def _evolve(self, session: LivySession) -> None:
        """Bring an active session's state and usage up to the clock, following its plan."""
        now = self._now_ms
        state = session.state
        if state == STARTING and now >= session.started_ms:
            state = RUNNING
        planned_end_ms = session.planned_end_ms
        if state == RUNNING and planned_end_ms is not None and now >= planned_end_ms:
            state = TERMINATING
        if state == TERMINATING:
            end_ms = (session.planned_end_ms or now) + _TERMINATING_MS
            if now >= end_ms:
                state = session.outcome
                session.end_time_ms = end_ms
                session.info = session.error_info if state == ERROR else ""
        if state != session.state:
            session.state = state
            session.fragment = None
        if state not in ACTIVE_STATES:
            self._active.pop(session.session_id, None)
        self._update_usage(session)

    def _update_usage(self, session: LivySession) -> None:
        """Usage grows with run time: from start to end (or to now while not ended)."""
        if session.state == STARTING and not session.end_time_ms:
            run_s = 0
        else:
            until_ms = session.end_time_ms or self._now_ms
            run_s = max(0, (until_ms - session.started_ms) // 1000)
        vcore_seconds = session.vcores * run_s
        if vcore_seconds == session.vcore_seconds:
            return
        session.vcore_seconds = vcore_seconds
        session.mb_seconds = session.memory_mb * run_s
        # One CU is one core with 4 GiB; a session pays for whichever it uses more of.
        cu = max(session.vcores, session.memory_mb / 4096)
        session.cu_hours = round(cu * run_s / 3600, 4)
        session.fragment = None

    def _force_state(self, session: LivySession, state: str) -> None:
        now = self._now_ms
        if state in FINAL_STATES:
            if not session.end_time_ms:
                session.end_time_ms = max(now, session.create_time_ms)
                session.started_ms = min(session.started_ms, session.end_time_ms)
            session.info = session.error_info if state == ERROR else ""
        elif state in ACTIVE_STATES:
            session.end_time_ms = 0
            session.info = ""
            if state == STARTING:
                session.started_ms = max(session.started_ms, now + 5_000)
            else:
                session.started_ms = min(session.started_ms, now)
            if state == RUNNING and (
                session.planned_end_ms is not None and session.planned_end_ms <= now
            ):
                session.planned_end_ms = now + self._rng.randrange(60_000, 3_600_000)
            if state == TERMINATING:
                session.planned_end_ms = now
        session.state = state
        session.fragment = None
        if state in ACTIVE_STATES:
            if session.session_id in self._sessions:
                self._active[session.session_id] = session
        else:
            self._active.pop(session.session_id, None)
        self._update_usage(session)

    def _permutation(self, gateway: Gateway) -> tuple[int, int]:
        """An affine permutation of list positions: a shuffle computed in O(1) per item."""
        total = len(gateway.sessions)
        cached = gateway.permutation
        if (
            cached is None
            or self.reshuffle_per_request
            or cached[0] != gateway.version
            or cached[1] != total
        ):
            multiplier = self._order_rng.randrange(1, max(total, 2))
            while math.gcd(multiplier, total) != 1:
                multiplier = self._order_rng.randrange(1, total)
            offset = self._order_rng.randrange(max(total, 1))
            cached = (gateway.version, total, multiplier, offset)
            gateway.permutation = cached
        return cached[2], cached[3]

    def _fragment(self, session: LivySession) -> bytes:
        if session.fragment is None or session.fragment_generation != self._generation:
            session.fragment = self._render(session)
            session.fragment_generation = self._generation
        return session.fragment

    def _render(self, session: LivySession) -> bytes:
        record: dict[str, object] = {
            "name": session.name,
            "computeId": session.compute_id,
            "sessionId": session.session_id,
            "sparkConf": session.spark_conf,
            "state": session.state,
            "info": session.info,
            "createTime": session.create_time_ms,
            "endTime": session.end_time_ms,
            "webUI": session.web_ui,
            "queue": session.queue,
            "cuHours": session.cu_hours,
            "vcoreSeconds": session.vcore_seconds,
            "mbSeconds": session.mb_seconds,
        }
        if self._quirks and session.quirk is not None:
            _apply_quirk(record, session.quirk)
        for key, value in session.overrides.items():
            if value is ABSENT:
                record.pop(key, None)
            else:
                record[key] = value
        try:
            return _ENCODER.encode(record).encode()
        except UnicodeEncodeError:
            return _ASCII_ENCODER.encode(record).encode()

    def _workspace_record(self, workspace: Workspace) -> dict[str, object]:
        return {
            "workspaceId": workspace.workspace_id,
            "workspaceName": workspace.name,
            "workspaceStatus": "RUNNING",
            "regionId": workspace.region_id,
            "createTime": workspace.create_time_ms,
            "paymentType": "PayAsYouGo",
            "paymentStatus": "NORMAL",
            "resourceSpec": {"cu": 1000},
            "storage": f"oss://spark-{workspace.workspace_id}/",
            "dlfType": "DLF2.0",
        }


def _apply_quirk(record: dict[str, object], quirk: Quirk) -> None:
    """Odd but storable shapes seen from real services; a correct client copes with each."""
    if quirk == "numbers_as_strings":
        for key in ("cuHours", "vcoreSeconds", "mbSeconds"):
            record[key] = str(record[key])
    elif quirk == "info_null_string":
        record["info"] = "null"
    elif quirk == "spark_conf_invalid":
        conf = str(record["sparkConf"])
        record["sparkConf"] = conf[: len(conf) // 2]
    elif quirk == "spark_conf_absent":
        del record["sparkConf"]
    elif quirk == "end_time_absent":
        if record["endTime"] == 0:
            del record["endTime"]
    elif quirk == "no_compute_id":
        del record["computeId"]
    elif quirk == "unicode_name":
        record["name"] = f"{record['name']}-数据清洗-🚀"
    elif quirk == "extra_field":
        record["sessionKind"] = "pyspark"


def _encode_token(offset: int) -> str:
    return base64.urlsafe_b64encode(f"ws-offset:{offset}".encode()).decode()


def _decode_token(token: str) -> int:
    try:
        prefix, _, number = base64.urlsafe_b64decode(token.encode()).decode().partition(":")
        if prefix != "ws-offset":
            raise ValueError(token)
        return max(0, int(number))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise ServiceError(400, "InvalidParameter", "The parameter nextToken is invalid.") from None
