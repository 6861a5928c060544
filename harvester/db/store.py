"""Data functions: page upserts, the run ledger and the target registry.

Every function takes the connection first; the caller owns the transaction, one per page
(DESIGN §6: a page's sessions, state changes, run counters and checkpoint commit together).

On PostgreSQL a page is written by ONE statement (data-modifying CTEs): one round trip,
atomic on its own, so a run sends it on its autocommit lock connection (db.locks).
SQLite cannot modify data in a CTE, so there the same steps are a few statements inside
the caller's transaction. Both skip unchanged rows inside the database.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import orjson
from sqlalchemy import (
    ColumnElement,
    Table,
    Update,
    and_,
    bindparam,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from harvester.db.tables import (
    OPEN_SESSION,
    UtcDateTime,
    harvest_runs,
    harvest_targets,
    livy_sessions,
)
from harvester.records import Gateway, RunMode, RunStatus, SessionRecord

# (record field, PostgreSQL type it travels as) in SessionRecord order: the fields of
# PAGE_ROW_TYPE. Only text and bigint travel: asyncpg encodes them in C, where jsonb
# would go through a Python encoder per value. jsonb and numeric are cast in SQL (parsed
# once either way, numeric from Python's shortest float text); times are converted from
# epoch ms in SQL.
_RECORD_FIELDS: Final = tuple(
    (field.name, "bigint" if field.name.endswith(("_ms", "_seconds")) else "text")
    for field in dataclasses.fields(SessionRecord)
)
#: the fields whose column type is not the type they travel as
_PG_CASTS: Final = {"spark_conf": "jsonb", "cu_hours": "numeric", "raw": "jsonb"}
#: columns filled from the API, in table order; changes to any of them are "real change"
SOURCE_COLUMNS: Final = tuple(name.removesuffix("_ms") for name, _ in _RECORD_FIELDS)


@dataclass(frozen=True, slots=True)
class PageCounts:
    """What storing one page did."""

    inserted: int
    updated: int
    unchanged: int
    state_changes: int


def _page_document(records: Sequence[SessionRecord]) -> str:
    # orjson serializes slotted dataclasses natively: one C call for the whole page.
    return orjson.dumps(records).decode()


def _pg_value(name: str) -> str:
    if name.endswith("_ms"):
        return f"timestamptz 'epoch' + i.{name} * interval '1 millisecond'"
    if name in _PG_CASTS:
        return f"CAST(i.{name} AS {_PG_CASTS[name]})"
    return f"i.{name}"


#: The composite type a page travels as on PostgreSQL (revision 0006): one array of rows,
#: which asyncpg encodes with its C record codec (one array of values per column costs
#: twice the client CPU: asyncpg checks every element for nesting).
PAGE_ROW_TYPE: Final = "livy_sessions_page_row"


def _pg_rows(records: Sequence[SessionRecord]) -> list[tuple[Any, ...]]:
    """The page as PAGE_ROW_TYPE rows, fields in _RECORD_FIELDS order."""
    dumps = orjson.dumps
    return [
        (
            r.session_id,
            r.workspace_id,
            r.compute_id,
            r.region_id,
            r.name,
            r.state,
            None if r.spark_conf is None else dumps(r.spark_conf).decode(),
            r.spark_conf_raw,
            r.proxy_user,
            r.queue,
            r.info,
            r.web_ui,
            r.create_time_ms,
            r.end_time_ms,
            None if r.cu_hours is None else repr(r.cu_hours),
            r.vcore_seconds,
            r.mb_seconds,
            dumps(r.raw).decode(),
        )
        for r in records
    ]


def _sqlite_value(name: str) -> str:
    path = f"json_extract(value, '$.{name}')"
    if name.endswith("_ms"):
        # The text layout SQLAlchemy uses for DateTime on SQLite, so both read back alike.
        return (
            f"strftime('%Y-%m-%d %H:%M:%S', {path} / 1000, 'unixepoch')"
            f" || printf('.%06d', ({path} % 1000) * 1000)"
        )
    return path


#: the columns an upsert may change (all but the key)
_MUTABLE_COLUMNS: Final = SOURCE_COLUMNS[1:]


def _changed(old: str, new: str, *, operator: str) -> str:
    return " OR ".join(f"{old}.{c} {operator} {new}.{c}" for c in _MUTABLE_COLUMNS)


_COLUMN_LIST: Final = ", ".join(SOURCE_COLUMNS)
_UPDATE_SET: Final = ", ".join(f"{c} = excluded.{c}" for c in _MUTABLE_COLUMNS)

#: positional parameters after the page's rows ($1), in this order
_PG_PARAMS: Final = (
    "now", "requests", "seen", "skipped", "invalid_values", "run_id", "checkpoint",
    "workspace_id", "compute_id",
)  # fmt: skip


_P: Final = {name: f"${n}" for n, name in enumerate(_PG_PARAMS, 2)}


_PG_PAGE_SQL: Final = f"""
WITH incoming AS (
    SELECT * FROM unnest(CAST($1 AS {PAGE_ROW_TYPE}[])) AS i
),
written AS (
    INSERT INTO livy_sessions AS s ({_COLUMN_LIST}, first_seen_at, updated_at, gone_at)
    SELECT {", ".join(_pg_value(name) for name, _ in _RECORD_FIELDS)},
           CAST({_P["now"]} AS timestamptz), CAST({_P["now"]} AS timestamptz), NULL
    FROM incoming AS i
    ON CONFLICT (session_id) DO UPDATE SET {_UPDATE_SET},
        updated_at = CASE WHEN {_changed("s", "excluded", operator="IS DISTINCT FROM")}
                     THEN excluded.updated_at ELSE s.updated_at END,
        gone_at = NULL
    WHERE {_changed("s", "excluded", operator="IS DISTINCT FROM")} OR s.gone_at IS NOT NULL
    -- An update keeps first_seen_at: a row first seen now was inserted by this statement.
    RETURNING s.session_id, s.state, s.first_seen_at = CAST({_P["now"]} AS timestamptz) AS new
),
counts AS (
    SELECT count(*) FILTER (WHERE w.new) AS inserted, count(*) FILTER (WHERE NOT w.new) AS updated
    FROM written AS w
),
changes AS (
    INSERT INTO session_state_changes (session_id, from_state, to_state, observed_at)
    SELECT c.session_id, c.from_state, c.state, CAST({_P["now"]} AS timestamptz)
    FROM (
        -- Every part of the statement reads the table as it was before it: the lookup
        -- finds an updated session's previous state (and is skipped for new ones).
        SELECT w.session_id, w.state, w.new, CASE WHEN w.new THEN NULL ELSE (
            SELECT p.state FROM livy_sessions AS p WHERE p.session_id = w.session_id
        ) END AS from_state
        FROM written AS w
    ) AS c
    WHERE c.new OR c.from_state IS DISTINCT FROM c.state
    RETURNING 1
),
run AS (
    UPDATE harvest_runs SET
        pages = pages + 1,
        requests = requests + CAST({_P["requests"]} AS integer),
        sessions_seen = sessions_seen + CAST({_P["seen"]} AS integer),
        sessions_inserted = sessions_inserted + counts.inserted,
        sessions_updated = sessions_updated + counts.updated,
        sessions_unchanged = sessions_unchanged
            + CAST({_P["seen"]} AS integer) - counts.inserted - counts.updated,
        sessions_skipped = sessions_skipped + CAST({_P["skipped"]} AS integer),
        invalid_values = invalid_values + CAST({_P["invalid_values"]} AS integer)
    FROM counts WHERE harvest_runs.id = CAST({_P["run_id"]} AS bigint)
    RETURNING 1
),
checkpoint AS (
    UPDATE harvest_targets SET checkpoint = CAST({_P["checkpoint"]} AS jsonb)
    WHERE workspace_id = {_P["workspace_id"]} AND compute_id = {_P["compute_id"]}
    RETURNING 1
)
SELECT counts.inserted, counts.updated, (SELECT count(*) FROM changes) AS state_changes,
       (SELECT count(*) FROM run) AS runs
FROM counts
"""

# A subquery, not a CTE: Python's sqlite3 reports no rowcount for statements starting WITH.
_SQLITE_INCOMING: Final = f"""(
    SELECT {
    ", ".join(f"{_sqlite_value(name)} AS {name.removesuffix('_ms')}" for name, _ in _RECORD_FIELDS)
}
    FROM json_each(:rows)
)"""

_SQLITE_STATE_CHANGES: Final = f"""
INSERT INTO session_state_changes (session_id, from_state, to_state, observed_at)
SELECT i.session_id, s.state, i.state, :now
FROM {_SQLITE_INCOMING} AS i LEFT JOIN livy_sessions AS s ON s.session_id = i.session_id
WHERE s.session_id IS NULL OR s.state IS NOT i.state
"""

_SQLITE_EXISTING: Final = f"""
SELECT count(*)
FROM {_SQLITE_INCOMING} AS i JOIN livy_sessions AS s ON s.session_id = i.session_id
"""

_SQLITE_UPSERT: Final = f"""
INSERT INTO livy_sessions AS s ({_COLUMN_LIST}, first_seen_at, updated_at, gone_at)
SELECT {_COLUMN_LIST}, :now, :now, NULL FROM {_SQLITE_INCOMING} WHERE true
ON CONFLICT (session_id) DO UPDATE SET {_UPDATE_SET},
    updated_at = CASE WHEN {_changed("s", "excluded", operator="IS NOT")}
                 THEN excluded.updated_at ELSE s.updated_at END,
    gone_at = NULL
WHERE {_changed("s", "excluded", operator="IS NOT")} OR s.gone_at IS NOT NULL
"""


def _statement(sql: str) -> Any:
    statement = text(sql)
    if ":now" in sql:
        statement = statement.bindparams(bindparam("now", type_=UtcDateTime()))
    return statement


_SQLITE_STEPS = {name: _statement(sql) for name, sql in (
    ("state_changes", _SQLITE_STATE_CHANGES),
    ("existing", _SQLITE_EXISTING),
    ("upsert", _SQLITE_UPSERT),
)}  # fmt: skip


async def store_page(
    conn: AsyncConnection,
    *,
    run_id: int,
    gateway: Gateway,
    records: Sequence[SessionRecord],
    requests: int,
    skipped: int,
    invalid_values: int,
    checkpoint: Mapping[str, Any],
    now: datetime,
) -> PageCounts:
    """Upsert one page, record state changes, add to the run's counters, move the checkpoint.

    `records` must hold each session id at most once. Unchanged sessions are not rewritten.
    """
    if conn.dialect.name == "postgresql":
        values = {
            "now": now,
            "requests": requests,
            "seen": len(records),
            "skipped": skipped,
            "invalid_values": invalid_values,
            "run_id": run_id,
            "checkpoint": orjson.dumps(checkpoint).decode(),
            "workspace_id": gateway.workspace_id,
            "compute_id": gateway.compute_id,
        }
        result = await conn.exec_driver_sql(
            _PG_PAGE_SQL, (_pg_rows(records), *(values[name] for name in _PG_PARAMS))
        )
        inserted, updated, state_changes, runs = tuple(result.one())
        if runs != 1:
            raise LookupError(f"harvest run {run_id} does not exist")
    else:
        params: dict[str, Any] = {"rows": _page_document(records), "now": now}
        state_changes = (await conn.execute(_SQLITE_STEPS["state_changes"], params)).rowcount
        existing = (await conn.execute(_SQLITE_STEPS["existing"], params)).scalar_one()
        written = (await conn.execute(_SQLITE_STEPS["upsert"], params)).rowcount
        inserted = len(records) - existing
        updated = written - inserted
        await _add_to_run(
            conn,
            run_id,
            requests=requests,
            pages=1,
            sessions_seen=len(records),
            sessions_inserted=inserted,
            sessions_updated=updated,
            sessions_unchanged=len(records) - written,
            sessions_skipped=skipped,
            invalid_values=invalid_values,
        )
        await conn.execute(_update_target(gateway).values(checkpoint=dict(checkpoint)))
    return PageCounts(
        inserted=inserted,
        updated=updated,
        unchanged=len(records) - inserted - updated,
        state_changes=state_changes,
    )


def _of_gateway(table: Table, gateway: Gateway) -> ColumnElement[bool]:
    """The rows of `table` (sessions, runs or targets) that belong to the gateway."""
    return and_(
        table.c.workspace_id == gateway.workspace_id,
        table.c.compute_id == gateway.compute_id,
    )


def _update_target(gateway: Gateway) -> Update:
    """An UPDATE of the gateway's row in harvest_targets."""
    return update(harvest_targets).where(_of_gateway(harvest_targets, gateway))


async def _add_to_run(conn: AsyncConnection, run_id: int, **increments: int) -> None:
    columns = harvest_runs.c
    result = await conn.execute(
        update(harvest_runs)
        .where(columns.id == run_id)
        .values({name: columns[name] + amount for name, amount in increments.items()})
    )
    if result.rowcount != 1:
        raise LookupError(f"harvest run {run_id} does not exist")


async def start_run(
    conn: AsyncConnection, gateway: Gateway, mode: RunMode, started_at: datetime
) -> int:
    """Open a run in the ledger and return its id."""
    result = await conn.execute(
        insert(harvest_runs)
        .values(
            workspace_id=gateway.workspace_id,
            compute_id=gateway.compute_id,
            region_id=gateway.region_id,
            started_at=started_at,
            status="running",
            mode=mode,
        )
        .returning(harvest_runs.c.id)
    )
    run_id = int(result.scalar_one())
    await conn.execute(_update_target(gateway).values(last_run_id=run_id))
    return run_id


@dataclass(frozen=True, slots=True)
class PassOutcome:
    """What a pass found out about the listing, written on its run when it ends."""

    total_count_changes: int = 0
    repeated_ids: int = 0
    rereads: int = 0
    sessions_gone: int = 0
    complete: bool | None = None
    notes: str | None = None
    #: newest first by createTime, as checked on the data of a full pass (None: unknown)
    listing_ordered: bool | None = None


async def finish_run(
    conn: AsyncConnection,
    run_id: int,
    gateway: Gateway,
    *,
    status: RunStatus,
    finished_at: datetime,
    mode: RunMode,
    requests: int = 0,
    error: str | None = None,
    outcome: PassOutcome = PassOutcome(),
) -> None:
    """Close a run; on success move the target's success marks and clear its checkpoint.

    On PostgreSQL this commit waits for the WAL flush (pages do not, see db.engine), and
    with it every page the run wrote before.
    """
    if conn.dialect.name == "postgresql":
        await conn.exec_driver_sql("SET LOCAL synchronous_commit = on")
    await conn.execute(
        update(harvest_runs)
        .where(harvest_runs.c.id == run_id)
        .values(
            status=status,
            mode=mode,
            finished_at=finished_at,
            error=error,
            requests=harvest_runs.c.requests + requests,
            total_count_changes=outcome.total_count_changes,
            repeated_ids=outcome.repeated_ids,
            rereads=outcome.rereads,
            sessions_gone=outcome.sessions_gone,
            complete=outcome.complete,
            notes=outcome.notes,
        )
    )
    if status == "succeeded":
        marks: dict[str, Any] = {"last_success_at": finished_at, "checkpoint": None}
        if mode == "full":
            marks["last_full_pass_at"] = finished_at
            marks["listing_ordered"] = outcome.listing_ordered
        await conn.execute(_update_target(gateway).values(marks))


async def register_targets(
    conn: AsyncConnection,
    gateways: Iterable[Gateway],
    *,
    origin: str,
    seen_at: datetime,
) -> None:
    """Record gateways as known and active: new ones inserted, known ones touched.

    One upsert per gateway, so replicas discovering the same new gateway never collide.
    """
    upsert = (
        postgresql_insert(harvest_targets)
        if conn.dialect.name == "postgresql"
        else sqlite_insert(harvest_targets)
    )
    for gateway in gateways:
        statement = upsert.values(
            workspace_id=gateway.workspace_id,
            compute_id=gateway.compute_id,
            region_id=gateway.region_id,
            name=gateway.name,
            origin=origin,
            active=True,
            first_seen_at=seen_at,
            last_seen_at=seen_at,
        )
        await conn.execute(
            statement.on_conflict_do_update(
                index_elements=["workspace_id", "compute_id"],
                set_={
                    "last_seen_at": seen_at,
                    "active": True,
                    "region_id": gateway.region_id,
                    "name": func.coalesce(gateway.name, harvest_targets.c.name),
                },
            )
        )


async def gateways_with_open_runs(conn: AsyncConnection) -> list[Gateway]:
    """Gateways that have a run still marked `running` (in flight, or left by a dead process)."""
    columns = harvest_runs.c
    rows = await conn.execute(
        select(columns.region_id, columns.workspace_id, columns.compute_id)
        .where(columns.status == "running")
        .distinct()
    )
    return [Gateway(row.region_id or "", row.workspace_id, row.compute_id) for row in rows]


@dataclass(frozen=True, slots=True)
class TargetState:
    """What the store knows about a gateway that decides the next pass's mode."""

    last_full_pass_at: datetime | None
    listing_ordered: bool | None


async def target_state(conn: AsyncConnection, gateway: Gateway) -> TargetState:
    """The gateway's last full pass and listing order (unknown for a new gateway)."""
    columns = harvest_targets.c
    row = (
        await conn.execute(
            select(columns.last_full_pass_at, columns.listing_ordered).where(
                _of_gateway(harvest_targets, gateway)
            )
        )
    ).one_or_none()
    if row is None:
        return TargetState(None, None)
    return TargetState(row.last_full_pass_at, row.listing_ordered)


@dataclass(frozen=True, slots=True)
class OpenSession:
    """A stored session that may still change, and where the listing should show it."""

    session_id: str
    create_time: datetime | None
    #: stored, still-listed sessions of the gateway created after it (0 = the newest)
    position: int


async def open_sessions(conn: AsyncConnection, gateway: Gateway) -> list[OpenSession]:
    """Still-listed sessions stored in a non-terminal state, with their expected position.

    Two index range scans: the open sessions (a small partial index), then a rank over
    the listed sessions no older than the deepest of them; history (older, gone) is
    never read, so the cost does not grow with what the store keeps.
    """
    columns = livy_sessions.c
    listed = (_of_gateway(livy_sessions, gateway), columns.gone_at.is_(None))
    rows = (
        await conn.execute(
            select(columns.session_id, columns.create_time)
            .where(*listed, OPEN_SESSION)
            .order_by(columns.create_time.desc())
        )
    ).all()
    times = [row.create_time for row in rows if row.create_time is not None]
    positions: dict[str, int] = {}
    if times:
        ranked = (
            select(
                columns.session_id,
                (func.rank().over(order_by=columns.create_time.desc()) - 1).label("position"),
            )
            .where(*listed, columns.create_time >= min(times))
            .subquery()
        )
        wanted = [row.session_id for row in rows if row.create_time is not None]
        found = await conn.execute(
            select(ranked.c.session_id, ranked.c.position).where(ranked.c.session_id.in_(wanted))
        )
        positions = {session_id: int(position) for session_id, position in found}
    return [
        OpenSession(row.session_id, row.create_time, positions.get(row.session_id, 0))
        for row in rows
    ]


async def listed_sessions(
    conn: AsyncConnection, gateway: Gateway, *, first_seen_before: datetime
) -> AsyncIterator[tuple[str, datetime | None]]:
    """(session id, create time) of stored sessions not marked gone, first seen before a time.

    Streamed: a gateway may hold more sessions than are worth holding in memory at once.
    """
    result = await conn.stream(
        select(livy_sessions.c.session_id, livy_sessions.c.create_time).where(
            _of_gateway(livy_sessions, gateway),
            livy_sessions.c.gone_at.is_(None),
            livy_sessions.c.first_seen_at < first_seen_before,
        )
    )
    async for row in result:
        yield row.session_id, row.create_time


async def mark_gone(conn: AsyncConnection, session_ids: Sequence[str], *, now: datetime) -> int:
    """Mark sessions the service no longer lists; their rows stay."""
    marked = 0
    for start in range(0, len(session_ids), 1000):
        chunk = list(session_ids[start : start + 1000])
        result = await conn.execute(
            update(livy_sessions)
            .where(livy_sessions.c.session_id.in_(chunk), livy_sessions.c.gone_at.is_(None))
            .values(gone_at=now)
        )
        marked += int(result.rowcount)
    return marked


async def fail_open_runs(conn: AsyncConnection, gateway: Gateway, *, finished_at: datetime) -> int:
    """Close the gateway's open runs as failed; call only while holding its lock."""
    columns = harvest_runs.c
    result = await conn.execute(
        update(harvest_runs)
        .where(_of_gateway(harvest_runs, gateway), columns.status == "running")
        .values(
            status="failed",
            finished_at=finished_at,
            error="abandoned: the process running it stopped before finishing",
        )
    )
    return int(result.rowcount)


async def active_gateways(conn: AsyncConnection) -> list[Gateway]:
    """Every gateway of harvest_targets still marked active."""
    columns = harvest_targets.c
    rows = await conn.execute(
        select(columns.region_id, columns.workspace_id, columns.compute_id, columns.name).where(
            columns.active.is_(True)
        )
    )
    return [Gateway(row.region_id, row.workspace_id, row.compute_id, row.name) for row in rows]


async def deactivate_targets(conn: AsyncConnection, gateways: Iterable[Gateway]) -> int:
    """Mark gateways inactive (their target no longer lists them); history stays."""
    deactivated = 0
    for gateway in gateways:
        result = await conn.execute(
            _update_target(gateway).where(harvest_targets.c.active.is_(True)).values(active=False)
        )
        deactivated += int(result.rowcount)
    return deactivated


async def last_successes(conn: AsyncConnection) -> dict[str, datetime | None]:
    """The last successful run of each active gateway, by `Gateway.key`, any process's."""
    columns = harvest_targets.c
    rows = await conn.execute(
        select(
            columns.region_id, columns.workspace_id, columns.compute_id, columns.last_success_at
        ).where(columns.active.is_(True))
    )
    return {
        Gateway(row.region_id, row.workspace_id, row.compute_id).key: row.last_success_at
        for row in rows
    }
