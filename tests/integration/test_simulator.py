"""The API simulator over real HTTP on loopback: shapes, paging, auth, faults, drift, admin."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from yarl import URL

from harvester.api.signing import Credentials, canonical_query, sign_headers
from harvester.simulator import (
    DEMO_ACCESS_KEY_ID,
    DEMO_ACCESS_KEY_SECRET,
    FAULT_KINDS,
    SimulatedService,
    serve,
)

NOW_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z: simulated time, independent of the wall clock
REGION = "cn-hangzhou"
WS = "w-0123456789abcdef"
GW = "lc-gatewayone00000"
GW_EMPTY = "lc-gatewayempty000"
SESSIONS = 250
DEMO = Credentials(DEMO_ACCESS_KEY_ID, DEMO_ACCESS_KEY_SECRET)
STS = Credentials("STS.tempkey", "sts-secret", "sts-token-value")
SESSIONS_PATH = f"/api/v1/workspaces/{WS}/livycompute/{GW}/session"
SESSION_KEYS = {
    "name",
    "computeId",
    "sessionId",
    "sparkConf",
    "state",
    "info",
    "createTime",
    "endTime",
    "webUI",
    "queue",
    "cuHours",
    "vcoreSeconds",
    "mbSeconds",
}


@dataclass
class Answer:
    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def acs_date(offset: timedelta = timedelta()) -> str:
    return (datetime.now(UTC) + offset).strftime("%Y-%m-%dT%H:%M:%SZ")


class Api:
    """A minimal signed client, written from DESIGN.md §3 (not the harvester's client)."""

    def __init__(self, http: aiohttp.ClientSession, base_url: str) -> None:
        self.http = http
        self.base_url = base_url
        self.host = URL(base_url).raw_authority

    def signed(
        self,
        path: str,
        query: Mapping[str, str],
        action: str,
        *,
        credentials: Credentials = DEMO,
        date: str | None = None,
        nonce: str | None = None,
        version: str = "2023-08-08",
    ) -> dict[str, str]:
        return sign_headers(
            credentials,
            "GET",
            path,
            query,
            {"host": self.host, "accept": "application/json"},
            action=action,
            version=version,
            date=date or acs_date(),
            nonce=nonce or uuid.uuid4().hex,
        )

    def url(self, path: str, query: Mapping[str, str]) -> URL:
        return URL(f"{self.base_url}{path}?{canonical_query(query)}", encoded=True)

    async def send(
        self,
        path: str,
        query: Mapping[str, str],
        headers: Mapping[str, str],
        *,
        timeout_s: float = 10.0,
    ) -> Answer:
        timeout = aiohttp.ClientTimeout(total=timeout_s)
        async with self.http.get(self.url(path, query), headers=headers, timeout=timeout) as resp:
            return Answer(resp.status, resp.headers, await resp.read())

    async def call(self, path: str, query: Mapping[str, str], action: str, **kwargs: Any) -> Answer:
        timeout_s = kwargs.pop("timeout_s", 10.0)
        return await self.send(
            path, query, self.signed(path, query, action, **kwargs), timeout_s=timeout_s
        )

    async def sessions(self, page_num: int = 1, page_size: int = 100, **kwargs: Any) -> Answer:
        query = {"pageNum": str(page_num), "pageSize": str(page_size), "regionId": REGION}
        return await self.call(SESSIONS_PATH, query, "ListLivyComputeSessions", **kwargs)

    async def workspaces(self, **query: str) -> Answer:
        return await self.call("/api/v1/workspaces", query, "ListWorkspaces")

    async def computes(self, workspace_id: str = WS) -> Answer:
        path = f"/api/interactive/v1/workspace/{workspace_id}/livycompute"
        return await self.call(path, {"regionId": REGION}, "ListLivyCompute")

    async def admin(self, method: str, path: str, body: Any = None) -> Any:
        async with self.http.request(method, f"{self.base_url}{path}", json=body) as resp:
            assert resp.status == 200, await resp.text()
            return await resp.json()


def make_service(**kwargs: Any) -> SimulatedService:
    service = SimulatedService(seed=7, now_ms=NOW_MS, quirks=False, **kwargs)
    service.add_workspace(WS, "analytics", region_id=REGION)
    service.add_gateway(WS, GW, "gateway-one")
    service.add_gateway(WS, GW_EMPTY, "gateway-empty")
    service.add_sessions(WS, GW, SESSIONS)
    service.add_workspace("w-beijing00000000", region_id="cn-beijing")
    return service


@pytest.fixture
def service() -> SimulatedService:
    return make_service()


@pytest.fixture
async def api(service: SimulatedService) -> AsyncIterator[Api]:
    keys = {DEMO.access_key_id: DEMO.access_key_secret, STS.access_key_id: STS.access_key_secret}
    tokens = {STS.access_key_id: str(STS.security_token)}
    async with (
        serve(service, access_keys=keys, security_tokens=tokens) as base_url,
        aiohttp.ClientSession() as http,
    ):
        yield Api(http, base_url)


# -- operations -----------------------------------------------------------------------------


async def test_list_sessions_shape(api: Api, service: SimulatedService) -> None:
    answer = await api.sessions(page_size=50)
    assert answer.status == 200
    assert answer.headers["x-acs-request-id"]
    body = answer.json()
    assert set(body) == {"requestId", "totalCount", "pageNum", "pageSize", "sessions"}
    assert body["requestId"] == answer.headers["x-acs-request-id"]
    assert (body["totalCount"], body["pageNum"], body["pageSize"]) == (SESSIONS, 1, 50)
    assert len(body["sessions"]) == 50
    for session in body["sessions"]:
        assert set(session) == SESSION_KEYS
        assert re.fullmatch(r"ls-[0-9a-f]{16}", session["sessionId"])
        assert session["computeId"] == GW
        assert isinstance(json.loads(session["sparkConf"]), dict)
        assert "proxyUser" in json.loads(session["sparkConf"])
        assert session["state"] in {"starting", "running", "terminating", "terminated", "error"}
        assert isinstance(session["cuHours"], float)
        assert isinstance(session["vcoreSeconds"], int)
        assert isinstance(session["mbSeconds"], int)
        assert session["createTime"] <= NOW_MS
        ended = session["state"] in {"terminated", "error"}
        assert (session["endTime"] >= session["createTime"]) if ended else session["endTime"] == 0
        assert session == service.record(session["sessionId"])


async def test_paging_covers_every_session_newest_first(
    api: Api, service: SimulatedService
) -> None:
    seen: list[dict[str, Any]] = []
    for page_num in range(1, 4):
        body = (await api.sessions(page_num, 100)).json()
        assert body["totalCount"] == SESSIONS
        seen.extend(body["sessions"])
    assert [s["sessionId"] for s in seen] == service.session_ids(WS, GW)
    assert len(seen) == SESSIONS
    created = [s["createTime"] for s in seen]
    assert created == sorted(created, reverse=True)
    beyond = (await api.sessions(4, 100)).json()
    assert beyond["sessions"] == []
    assert beyond["totalCount"] == SESSIONS


async def test_page_defaults_and_bad_parameters(api: Api) -> None:
    body = (await api.call(SESSIONS_PATH, {}, "ListLivyComputeSessions")).json()
    assert (body["pageNum"], body["pageSize"], len(body["sessions"])) == (1, 20, 20)
    for query in ({"pageSize": "0"}, {"pageSize": "101"}, {"pageNum": "0"}, {"pageNum": "x"}):
        answer = await api.call(SESSIONS_PATH, query, "ListLivyComputeSessions")
        assert answer.status == 400
        assert answer.json()["Code"] == "InvalidParameter"


async def test_unordered_is_shuffled_but_complete(api: Api, service: SimulatedService) -> None:
    service.unordered = True
    ids = [
        s["sessionId"]
        for page in range(1, 4)
        for s in (await api.sessions(page, 100)).json()["sessions"]
    ]
    assert sorted(ids) == sorted(service.session_ids(WS, GW))
    assert ids != service.session_ids(WS, GW)
    service.add_sessions(WS, GW, 1)  # the list changed: a new shuffle
    first_again = [s["sessionId"] for s in (await api.sessions(1, 100)).json()["sessions"]]
    assert first_again != ids[:100]


async def test_unknown_workspace_gateway_or_region_is_404(api: Api) -> None:
    paths = [
        "/api/v1/workspaces/w-nope/livycompute/lc-x/session",
        f"/api/v1/workspaces/{WS}/livycompute/lc-nope/session",
    ]
    for path in paths:
        answer = await api.call(path, {"regionId": REGION}, "ListLivyComputeSessions")
        assert answer.status == 404
        error = answer.json()
        assert set(error) == {"RequestId", "Code", "Message", "HostId"}
        assert error["RequestId"] == answer.headers["x-acs-request-id"]
    answer = await api.call(SESSIONS_PATH, {"regionId": "cn-beijing"}, "ListLivyComputeSessions")
    assert answer.status == 404
    answer = await api.computes("w-nope")
    assert answer.status == 404


async def test_list_workspaces_token_paging_by_region(api: Api, service: SimulatedService) -> None:
    service.add_workspace("w-second", region_id=REGION)
    service.add_workspace("w-third", region_id=REGION)
    seen: list[str] = []
    token = ""
    for _ in range(5):
        query = {"regionId": REGION, "maxResults": "2"}
        if token:
            query["nextToken"] = token
        body = (await api.workspaces(**query)).json()
        assert body["totalCount"] == 3
        assert body["maxResults"] == 2
        for workspace in body["workspaces"]:
            assert workspace["workspaceStatus"] == "RUNNING"
            assert workspace["regionId"] == REGION
            assert workspace["workspaceName"]
        seen.extend(w["workspaceId"] for w in body["workspaces"])
        token = body["nextToken"]
        if not token:
            break
    assert seen == [WS, "w-second", "w-third"]
    beijing = (await api.workspaces(regionId="cn-beijing")).json()
    assert [w["workspaceId"] for w in beijing["workspaces"]] == ["w-beijing00000000"]
    assert beijing["nextToken"] == ""
    assert (await api.workspaces(regionId=REGION, maxResults="101")).status == 400
    assert (await api.workspaces(regionId=REGION, nextToken="garbage!")).status == 400


async def test_list_livy_compute_shape(api: Api) -> None:
    answer = await api.computes()
    assert answer.status == 200
    body = answer.json()
    assert (body["code"], body["message"]) == ("1000000", "ok")
    assert body["requestId"] == answer.headers["x-acs-request-id"]
    computes = body["data"]["livyComputes"]
    assert [c["computeId"] for c in computes] == [GW, GW_EMPTY]
    for compute in computes:
        fields = {"computeId", "name", "status", "queueName", "createdBy", "gmtCreate", "startTime"}
        assert fields <= set(compute)
        assert compute["status"] == "Running"
        assert isinstance(compute["gmtCreate"], int)


async def test_empty_gateway_lists_nothing(api: Api) -> None:
    path = f"/api/v1/workspaces/{WS}/livycompute/{GW_EMPTY}/session"
    body = (await api.call(path, {"pageSize": "100"}, "ListLivyComputeSessions")).json()
    assert (body["totalCount"], body["sessions"]) == (0, [])


async def test_quirks_are_storable_and_switchable(api: Api, service: SimulatedService) -> None:
    quirky = SimulatedService(seed=3, now_ms=NOW_MS, quirk_rate=1.0)
    quirky.add_workspace(WS)
    quirky.add_gateway(WS, GW)
    quirky.add_sessions(WS, GW, 200)
    async with serve(quirky) as base_url:
        other = Api(api.http, base_url)
        pages = [await other.sessions(1, 100), await other.sessions(2, 100)]
        sessions = [s for page in pages for s in page.json()["sessions"]]
        assert all(b"\\u0000" not in page.body for page in pages)
        assert any(isinstance(s.get("cuHours"), str) for s in sessions)
        assert any(s.get("info") == "null" for s in sessions)
        assert any("sparkConf" not in s for s in sessions)
        assert any("computeId" not in s for s in sessions)
        assert any("sessionKind" in s for s in sessions)
        assert any("🚀" in s["name"] for s in sessions)
        assert all(s["sessionId"] for s in sessions)
        quirky.quirks = False
        clean = (await other.sessions(1, 100)).json()["sessions"]
        assert all(set(s) == SESSION_KEYS for s in clean)
        assert all(isinstance(s["cuHours"], float) for s in clean)


# -- authentication -----------------------------------------------------------------------------


async def test_signature_checks(api: Api) -> None:
    query = {"pageNum": "1", "pageSize": "10", "regionId": REGION}
    action = "ListLivyComputeSessions"

    unsigned = await api.send(SESSIONS_PATH, query, {"host": api.host})
    assert (unsigned.status, unsigned.json()["Code"]) == (400, "SignatureDoesNotMatch")

    wrong_secret = Credentials(DEMO.access_key_id, "not-the-secret")
    answer = await api.call(SESSIONS_PATH, query, action, credentials=wrong_secret)
    assert (answer.status, answer.json()["Code"]) == (400, "SignatureDoesNotMatch")
    assert b"not-the-secret" not in answer.body
    assert DEMO.access_key_secret.encode() not in answer.body

    tampered = api.signed(SESSIONS_PATH, query, action)
    answer = await api.send(SESSIONS_PATH, {**query, "pageNum": "2"}, tampered)
    assert (answer.status, answer.json()["Code"]) == (400, "SignatureDoesNotMatch")

    unknown = Credentials("no-such-key", "whatever")
    answer = await api.call(SESSIONS_PATH, query, action, credentials=unknown)
    assert (answer.status, answer.json()["Code"]) == (404, "InvalidAccessKeyId.NotFound")

    for offset in (timedelta(minutes=-16), timedelta(minutes=16)):
        answer = await api.call(SESSIONS_PATH, query, action, date=acs_date(offset))
        assert (answer.status, answer.json()["Code"]) == (400, "InvalidTimeStamp.Expired")
    assert (
        await api.call(SESSIONS_PATH, query, action, date=acs_date(timedelta(minutes=-14)))
    ).status == 200
    no_date = {
        k: v for k, v in api.signed(SESSIONS_PATH, query, action).items() if k != "x-acs-date"
    }
    answer = await api.send(SESSIONS_PATH, query, no_date)
    assert (answer.status, answer.json()["Code"]) == (400, "InvalidTimeStamp.Expired")

    answer = await api.call(SESSIONS_PATH, query, action, version="2020-01-01")
    assert (answer.status, answer.json()["Code"]) == (400, "InvalidVersion")

    answer = await api.call(SESSIONS_PATH, query, "ListWorkspaces")
    assert (answer.status, answer.json()["Code"]) == (400, "InvalidAction")


async def test_reused_nonce_is_rejected(api: Api, service: SimulatedService) -> None:
    nonce = uuid.uuid4().hex
    assert (await api.sessions(nonce=nonce)).status == 200
    again = await api.sessions(nonce=nonce)
    assert (again.status, again.json()["Code"]) == (400, "SignatureNonceUsed")
    replay = api.signed(SESSIONS_PATH, {"pageNum": "1"}, "ListLivyComputeSessions")
    assert (await api.send(SESSIONS_PATH, {"pageNum": "1"}, replay)).status == 200
    assert (await api.send(SESSIONS_PATH, {"pageNum": "1"}, replay)).status == 400
    assert service.stats.by_status[400] == 2


async def test_sts_token_must_match(api: Api) -> None:
    assert (await api.sessions(credentials=STS)).status == 200
    wrong = Credentials(STS.access_key_id, STS.access_key_secret, "another-token")
    answer = await api.sessions(credentials=wrong)
    assert answer.status == 400
    assert answer.json()["Code"].startswith("InvalidSecurityToken")
    bare = Credentials(STS.access_key_id, STS.access_key_secret)
    assert (await api.sessions(credentials=bare)).status == 400
    demo_with_token = Credentials(DEMO.access_key_id, DEMO.access_key_secret, "sts-token-value")
    assert (await api.sessions(credentials=demo_with_token)).status == 400


# -- faults ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "status", "code"),
    [
        ("http_500", 500, "InternalError"),
        ("http_503", 503, "ServiceUnavailable"),
        ("throttle_400", 400, "Throttling.User"),
        ("throttle_429", 429, "Throttling"),
    ],
)
async def test_error_faults(
    api: Api, service: SimulatedService, kind: Any, status: int, code: str
) -> None:
    service.faults.retry_after_ms = 1500
    service.faults.force(kind)
    answer = await api.sessions()
    assert answer.status == status
    assert answer.json()["Code"] == code
    assert answer.headers["x-acs-request-id"] == answer.json()["RequestId"]
    if kind == "throttle_400":
        assert answer.headers["x-acs-retry-after"] == "1500"
    if kind == "throttle_429":
        assert answer.headers["Retry-After"] == "2"
    assert (await api.sessions()).status == 200  # forced once only
    assert service.stats.faults[kind] == 1


async def test_html_502_fault(api: Api, service: SimulatedService) -> None:
    service.faults.force("http_502_html")
    answer = await api.workspaces(regionId=REGION)
    assert answer.status == 502
    assert answer.headers["Content-Type"].startswith("text/html")
    assert answer.body.startswith(b"<html>")
    assert answer.headers["x-acs-request-id"]


async def test_slow_fault_outlasts_a_client_timeout(api: Api, service: SimulatedService) -> None:
    service.faults.slow_s = 0.5
    service.faults.force("slow")
    with pytest.raises(TimeoutError):
        await api.sessions(timeout_s=0.1)
    service.faults.force("slow")
    started = time.monotonic()
    assert (await api.sessions()).status == 200
    assert time.monotonic() - started >= 0.5


async def test_delay_adds_latency(api: Api, service: SimulatedService) -> None:
    service.faults.delay_s = 0.2
    started = time.monotonic()
    assert (await api.computes()).status == 200
    assert time.monotonic() - started >= 0.2


async def raw_get(api: Api, path: str, query: Mapping[str, str], action: str) -> bytes:
    """Everything the server sends for one request, read until it closes the connection.

    Raw sockets, because aiohttp resends a GET once when the server disconnects.
    """
    url = URL(api.base_url)
    reader, writer = await asyncio.open_connection(url.host, url.port)
    headers = api.signed(path, query, action)
    lines = [f"GET {path}?{canonical_query(query)} HTTP/1.1"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    writer.write(("\r\n".join([*lines, "Connection: close", "", ""])).encode())
    try:
        return await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()
        await writer.wait_closed()


async def test_disconnect_faults(api: Api, service: SimulatedService) -> None:
    query = {"pageSize": "100"}
    action = "ListLivyComputeSessions"
    service.faults.force("disconnect")
    assert await raw_get(api, SESSIONS_PATH, query, action) == b""
    service.faults.force("disconnect_mid_body")
    received = await raw_get(api, SESSIONS_PATH, query, action)
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    length = re.search(rb"(?i)content-length: (\d+)", head)
    assert length
    assert 0 < len(body) < int(length.group(1))
    assert (await raw_get(api, SESSIONS_PATH, query, action)).startswith(b"HTTP/1.1 200")
    assert service.stats.by_status[0] == 1


async def test_silent_resend_after_disconnect_reuses_the_nonce(
    api: Api, service: SimulatedService
) -> None:
    """aiohttp resends an idempotent request once when a pooled connection drops; the
    resend carries the same nonce, which the service (like the real one) rejects."""
    assert (await api.sessions()).status == 200  # the connection is now pooled
    service.faults.force("disconnect")
    answer = await api.sessions()
    assert (answer.status, answer.json()["Code"]) == (400, "SignatureNonceUsed")
    assert service.stats.by_status[0] == 1


@pytest.mark.parametrize("kind", ["truncated_json", "malformed_json"])
async def test_bad_json_faults(api: Api, service: SimulatedService, kind: Any) -> None:
    service.faults.force(kind)
    answer = await api.sessions()
    assert answer.status == 200
    with pytest.raises(json.JSONDecodeError):
        answer.json()


async def test_empty_page_fault_waits_for_a_listing(api: Api, service: SimulatedService) -> None:
    service.faults.force("empty_page")
    assert (await api.computes()).json()["data"]["livyComputes"]  # not applicable: still queued
    body = (await api.sessions()).json()
    assert body["sessions"] == []
    assert body["totalCount"] == SESSIONS
    assert len((await api.sessions()).json()["sessions"]) == 100


async def test_error_code_in_http_200(api: Api, service: SimulatedService) -> None:
    service.faults.force("error_code_200")
    answer = await api.computes()
    assert answer.status == 200
    assert answer.json()["code"] != "1000000"
    assert (await api.computes()).json()["code"] == "1000000"


async def test_error_body_in_http_200(api: Api, service: SimulatedService) -> None:
    service.faults.force("error_body_200")
    answer = await api.sessions()
    assert answer.status == 200
    assert answer.json()["Code"] == "ServiceUnavailable"
    assert "sessions" not in answer.json()
    assert len((await api.sessions()).json()["sessions"]) == 100


async def test_fault_rates_are_deterministic_with_the_seed() -> None:
    async def statuses() -> list[int]:
        service = make_service()
        service.faults.set_rate("http_503", 0.3)
        service.faults.set_rate("throttle_429", 0.2)
        async with serve(service) as base_url, aiohttp.ClientSession() as http:
            api = Api(http, base_url)
            return [(await api.sessions(page_size=1)).status for _ in range(40)]

    first, second = await statuses(), await statuses()
    assert first == second
    assert {200, 503, 429} <= set(first)


def test_every_fault_kind_is_tested_here() -> None:
    with open(__file__, encoding="utf-8") as file:
        source = file.read()
    assert all(f'"{kind}"' in source for kind in FAULT_KINDS)


# -- drift and time -------------------------------------------------------------------------


async def test_new_sessions_per_list_request_shift_pages(
    api: Api, service: SimulatedService
) -> None:
    service.new_sessions_per_list_request = 5
    first = (await api.sessions(1, 10)).json()
    second = (await api.sessions(2, 10)).json()
    assert (first["totalCount"], second["totalCount"]) == (SESSIONS + 5, SESSIONS + 10)
    first_ids = [s["sessionId"] for s in first["sessions"]]
    second_ids = [s["sessionId"] for s in second["sessions"]]
    assert second_ids[:5] == first_ids[5:]  # the head grew: the next page repeats the tail
    assert first["sessions"][0]["state"] == "starting"


async def test_expire_per_list_request_drops_the_oldest(
    api: Api, service: SimulatedService
) -> None:
    oldest = service.session_ids(WS, GW)[-3:]
    service.expire_per_list_request = 3
    body = (await api.sessions(3, 100)).json()
    assert body["totalCount"] == SESSIONS - 3
    listed = {s["sessionId"] for s in body["sessions"]}
    assert not listed & set(oldest)
    assert len(body["sessions"]) == SESSIONS - 3 - 200


async def test_advance_moves_states_and_usage(api: Api, service: SimulatedService) -> None:
    [fresh] = service.add_sessions(WS, GW, 1, state="starting")
    assert (await _listed(api, fresh))["state"] == "starting"
    service.advance(120)
    running = await _listed(api, fresh)
    assert running["state"] == "running"
    assert running["vcoreSeconds"] > 0
    service.advance(60)
    later = await _listed(api, fresh)
    assert later["vcoreSeconds"] > running["vcoreSeconds"]
    assert later["cuHours"] >= running["cuHours"]
    service.advance(10 * 86_400)
    final = await _listed(api, fresh)
    if final["state"] == "running":  # one in 500 sessions runs until stopped
        service.finish(fresh)
        final = await _listed(api, fresh)
    assert final["state"] in {"terminated", "error"}
    assert final["endTime"] > final["createTime"]
    service.advance(3600)
    assert await _listed(api, fresh) == final  # ended: usage is final


async def _listed(api: Api, session_id: str) -> dict[str, Any]:
    for page in range(1, 5):
        for session in (await api.sessions(page, 100)).json()["sessions"]:
            if session["sessionId"] == session_id:
                return dict(session)
    raise AssertionError(f"{session_id} not listed")


# -- admin ----------------------------------------------------------------------------------


async def test_admin_endpoints(api: Api, service: SimulatedService) -> None:
    await api.sessions()
    await api.computes()
    stats = await api.admin("GET", "/_sim/stats")
    assert stats["by_action"] == {"ListLivyComputeSessions": 1, "ListLivyCompute": 1}
    assert stats["by_status"] == {"200": 2}
    assert stats["sessions_served"] == 100
    assert (await api.admin("POST", "/_sim/stats/reset"))["requests"] == 0

    faults = await api.admin(
        "POST",
        "/_sim/faults",
        {"rates": {"http_500": 0.0}, "forced": ["http_503", {"kind": "http_500", "count": 2}]},
    )
    assert faults["forced"] == ["http_503", "http_500", "http_500"]
    assert (await api.admin("GET", "/_sim/stats"))["requests"] == 0  # admin is never faulted
    assert [(await api.sessions()).status for _ in range(4)] == [503, 500, 500, 200]
    assert (await api.admin("POST", "/_sim/faults", {"reset": True}))["forced"] == []

    added = await api.admin(
        "POST",
        "/_sim/sessions",
        {"workspace_id": WS, "compute_id": GW, "count": 3, "state": "running"},
    )
    ids = added["session_ids"]
    assert len(ids) == 3
    assert all(service.session(i).state == "running" for i in ids)
    assert (await api.admin("POST", "/_sim/finish", {"session_ids": ids[:2]}))["finished"] == 2
    assert [service.session(i).state for i in ids] == ["terminated", "terminated", "running"]

    before = service.now_ms
    assert (await api.admin("POST", "/_sim/advance?seconds=90"))["now_ms"] == before + 90_000

    oldest = service.session_ids(WS, GW)[-2:]
    expired = await api.admin(
        "POST", "/_sim/expire", {"workspace_id": WS, "compute_id": GW, "count": 2}
    )
    assert sorted(expired["expired"]) == sorted(oldest)

    state = await api.admin("GET", "/_sim/state")
    [workspace] = [w for w in state["workspaces"] if w["workspace_id"] == WS]
    totals = {g["compute_id"]: g["total"] for g in workspace["gateways"]}
    assert totals == {GW: SESSIONS + 3 - 2, GW_EMPTY: 0}

    settings = await api.admin(
        "POST", "/_sim/settings", {"unordered": True, "new_sessions_per_list_request": 1}
    )
    assert settings["unordered"] is True
    assert service.new_sessions_per_list_request == 1


async def test_admin_rejects_bad_input(api: Api) -> None:
    base = api.base_url
    cases = [
        ("POST", "/_sim/faults", {"forced": ["no_such_fault"]}, 400),
        ("POST", "/_sim/faults", {"rates": {"http_500": 2}}, 400),
        ("POST", "/_sim/sessions", {"workspace_id": WS, "compute_id": GW}, 400),
        ("POST", "/_sim/sessions", {"workspace_id": WS, "compute_id": "lc-nope", "count": 1}, 404),
        ("POST", "/_sim/finish", {"session_ids": ["ls-nope"]}, 404),
        ("POST", "/_sim/settings", {"bogus": 1}, 400),
    ]
    for method, path, body, status in cases:
        async with api.http.request(method, f"{base}{path}", json=body) as resp:
            assert resp.status == status, (path, body)
            assert "error" in await resp.json()
    async with api.http.post(f"{base}/_sim/advance?seconds=-1") as resp:
        assert resp.status == 400


# -- the CLI ---------------------------------------------------------------------------------


async def test_cli_serves_until_sigterm(tmp_path: Any) -> None:
    env = {
        **os.environ,
        "HARVESTER_SIMULATOR_ACCESS_KEY_ID": "cli-key",
        "HARVESTER_SIMULATOR_ACCESS_KEY_SECRET": "cli-secret",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from harvester.simulator.cli import simulate; simulate()",
        "--port",
        "0",
        "--seed",
        "5",
        "--workspaces",
        "1",
        "--gateways-per-workspace",
        "1",
        "--sessions-per-gateway",
        "30",
        "--empty-gateways",
        "0",
        "--speed",
        "0",
        "--fault-rate",
        "http_503=0",
        "--no-quirks",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 15)).decode()
        match = re.fullmatch(r"simulator listening on (http://127\.0\.0\.1:(\d+))\n", line)
        assert match, line
        assert int(match.group(2)) > 0
        async with aiohttp.ClientSession() as http:
            api = Api(http, match.group(1))
            state = await api.admin("GET", "/_sim/state")
            [workspace] = state["workspaces"]
            [gateway] = workspace["gateways"]
            assert gateway["total"] == 30
            path = (
                f"/api/v1/workspaces/{workspace['workspace_id']}"
                f"/livycompute/{gateway['compute_id']}/session"
            )
            creds = Credentials("cli-key", "cli-secret")
            answer = await api.call(
                path, {"pageSize": "100"}, "ListLivyComputeSessions", credentials=creds
            )
            assert answer.status == 200
            assert answer.json()["totalCount"] == 30
            demo = await api.call(path, {}, "ListLivyComputeSessions")
            assert demo.status == 404  # only the configured key is known
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 10) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def test_cli_rejects_unknown_fault_kind() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "from harvester.simulator.cli import simulate; simulate()",
            "--fault-rate",
            "nope=0.1",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert "KIND=RATE" in result.stderr
