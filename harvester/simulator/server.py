"""The simulator's HTTP face (aiohttp.web): the three API operations, auth, faults, admin.

The API routes check ACS3 signatures, dates, nonces, version and action the way the real
service does, then ask the model for a fault and an answer. `/_sim/*` admin routes are
unsigned and never faulted, so subprocess tests and demos can steer the service.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, Final

from aiohttp import web

from harvester.api.signing import parse_authorization, verify
from harvester.simulator.model import (
    API_VERSION,
    FAULT_KINDS,
    FINAL_STATES,
    Action,
    FaultKind,
    ServiceError,
    SimulatedService,
    parse_int,
)

DEMO_ACCESS_KEY_ID: Final = "harvester-demo-key"
DEMO_ACCESS_KEY_SECRET: Final = "harvester-demo-secret"  # noqa: S105 - a published demo value
MAX_CLOCK_SKEW_S: Final = 15 * 60
_JSON: Final = "application/json;charset=utf-8"
_BAD_GATEWAY_HTML: Final = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>Tengine</center>\r\n"
    b"</body>\r\n</html>\r\n"
)
_NOT_JSON: Final = b"<html><body>Service is under maintenance</body></html>\n"

_service_key: Final = web.AppKey("service", SimulatedService)

Produce = Callable[[web.Request, FaultKind | None, str], bytes]


class NonceCache:
    """Nonces seen in the last `ttl_s`, with a hard cap on memory (oldest dropped first)."""

    def __init__(self, ttl_s: float = MAX_CLOCK_SKEW_S, max_entries: int = 500_000) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._seen: OrderedDict[str, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._seen)

    def use(self, nonce: str, now_s: float) -> bool:
        """Record `nonce`; False if it was already used within the window."""
        seen = self._seen
        while seen:
            oldest, expires_s = next(iter(seen.items()))
            if expires_s > now_s and len(seen) < self.max_entries:
                break
            del seen[oldest]
        if nonce in seen:
            return False
        seen[nonce] = now_s + self.ttl_s
        return True


class Authenticator:
    """The service's request checks: credentials and date first, then signature, then the rest."""

    def __init__(
        self,
        access_keys: Mapping[str, str],
        security_tokens: Mapping[str, str],
        *,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.access_keys = dict(access_keys)
        self.security_tokens = dict(security_tokens)
        self.nonces = NonceCache()
        self._wall_clock = wall_clock

    def check(self, request: web.Request, action: Action, body: bytes) -> ServiceError | None:
        """None if the request may proceed, else the error to answer with."""
        headers = request.headers
        parsed = parse_authorization(headers.get("authorization", ""))
        if parsed is None:
            return ServiceError(
                400, "SignatureDoesNotMatch", "Missing or malformed Authorization header."
            )
        if parsed.access_key_id not in self.access_keys:
            return ServiceError(
                404, "InvalidAccessKeyId.NotFound", "Specified access key is not found."
            )
        now_s = self._wall_clock()
        date_error = _check_date(headers.get("x-acs-date"), now_s)
        if date_error:
            return ServiceError(400, "InvalidTimeStamp.Expired", date_error)
        path = request.raw_path.partition("?")[0]
        reason = verify(self.access_keys, request.method, path, dict(request.query), headers, body)
        if reason is not None:
            return ServiceError(
                400,
                "SignatureDoesNotMatch",
                f"The request signature does not conform to Aliyun standards: {reason}.",
            )
        token_error = self._check_token(parsed.access_key_id, headers)
        if token_error:
            return token_error
        version = headers.get("x-acs-version")
        if version != API_VERSION:
            return ServiceError(
                400, "InvalidVersion", f"Specified parameter Version is not valid: {version!r}."
            )
        if headers.get("x-acs-action") != action:
            return ServiceError(
                400,
                "InvalidAction",
                f"This API path is the operation {action}; x-acs-action differs.",
            )
        nonce = headers.get("x-acs-signature-nonce")
        if not nonce:
            return ServiceError(400, "MissingSignatureNonce", "SignatureNonce is mandatory.")
        if not self.nonces.use(nonce, now_s):
            return ServiceError(
                400, "SignatureNonceUsed", "The request signature nonce has been used."
            )
        return None

    def _check_token(self, access_key_id: str, headers: Mapping[str, str]) -> ServiceError | None:
        expected = self.security_tokens.get(access_key_id)
        token = headers.get("x-acs-security-token")
        if token is None:
            if expected is None:
                return None
            return ServiceError(
                400, "InvalidSecurityToken.Malformed", "The STS key needs its security token."
            )
        if expected is None or token != expected:
            return ServiceError(
                400,
                "InvalidSecurityToken.MismatchWithAccessKey",
                "The security token does not match the access key.",
            )
        declared = headers.get("x-acs-accesskey-id")
        if declared is not None and declared != access_key_id:
            return ServiceError(
                400,
                "InvalidSecurityToken.MismatchWithAccessKey",
                "x-acs-accesskey-id differs from the signing access key.",
            )
        return None


_auth_key: Final = web.AppKey("auth", Authenticator)


def _check_date(value: str | None, now_s: float) -> str | None:
    if not value:
        return "The x-acs-date header is missing."
    try:
        sent = datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        return "The x-acs-date header is not in the format yyyy-MM-ddTHH:mm:ssZ."
    if abs(sent.timestamp() - now_s) > MAX_CLOCK_SKEW_S:
        return "Specified time stamp or date value is expired (more than 15 minutes off)."
    return None


def build_app(
    service: SimulatedService,
    *,
    access_keys: Mapping[str, str] | None = None,
    security_tokens: Mapping[str, str] | None = None,
) -> web.Application:
    """The simulator app; `access_keys` maps AccessKey id → secret (default: the demo pair).

    `security_tokens` maps an STS AccessKey id → the token it must arrive with.
    """
    app = web.Application()
    app[_service_key] = service
    app[_auth_key] = Authenticator(
        access_keys if access_keys is not None else {DEMO_ACCESS_KEY_ID: DEMO_ACCESS_KEY_SECRET},
        security_tokens or {},
    )
    app.router.add_get(
        "/api/v1/workspaces/{workspace_id}/livycompute/{compute_id}/session", _list_sessions
    )
    app.router.add_get("/api/v1/workspaces", _list_workspaces)
    app.router.add_get("/api/interactive/v1/workspace/{workspace_id}/livycompute", _list_computes)
    app.router.add_get("/_sim/stats", _admin_stats)
    app.router.add_post("/_sim/stats/reset", _admin_stats_reset)
    app.router.add_get("/_sim/faults", _admin_faults)
    app.router.add_post("/_sim/faults", _admin_faults)
    app.router.add_get("/_sim/settings", _admin_settings)
    app.router.add_post("/_sim/settings", _admin_settings)
    app.router.add_post("/_sim/advance", _admin_advance)
    app.router.add_post("/_sim/sessions", _admin_sessions)
    app.router.add_post("/_sim/finish", _admin_finish)
    app.router.add_post("/_sim/expire", _admin_expire)
    app.router.add_get("/_sim/state", _admin_state)
    app.router.add_route("*", "/{tail:.*}", _unknown)
    return app


@asynccontextmanager
async def serve(
    service: SimulatedService,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    access_keys: Mapping[str, str] | None = None,
    security_tokens: Mapping[str, str] | None = None,
) -> AsyncIterator[str]:
    """Run the simulator until the block exits; yields its base URL (real port if 0)."""
    app = build_app(service, access_keys=access_keys, security_tokens=security_tokens)
    # No access log: it would cost more than answering a page. Short shutdown grace so a
    # request stuck in a `slow` fault does not hold a test's teardown for long.
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound_port = runner.addresses[0][1]
        shown_host = f"[{host}]" if ":" in host else host
        yield f"http://{shown_host}:{bound_port}"
    finally:
        await runner.cleanup()


# -- API operations --------------------------------------------------------------------------


async def _list_sessions(request: web.Request) -> web.StreamResponse:
    def produce(request: web.Request, fault: FaultKind | None, request_id: str) -> bytes:
        service = request.app[_service_key]
        if request.match_info["compute_id"] in service.broken_gateways:
            raise ServiceError(503, "ServiceUnavailable", "The livy compute is unavailable.")
        query = request.query
        page_num = parse_int(query, "pageNum", 1, 1)
        page_size = parse_int(query, "pageSize", 20, 1, 100)
        page = service.list_sessions_page(
            request.match_info["workspace_id"],
            request.match_info["compute_id"],
            page_num=page_num,
            page_size=page_size,
            region_id=query.get("regionId") or None,
            empty=fault == "empty_page",
        )
        return page.render(request_id)

    return await _answer(request, "ListLivyComputeSessions", produce)


async def _list_workspaces(request: web.Request) -> web.StreamResponse:
    def produce(request: web.Request, fault: FaultKind | None, request_id: str) -> bytes:
        query = request.query
        max_results = parse_int(query, "maxResults", 20, 1, 100)
        body = request.app[_service_key].list_workspaces(
            query.get("regionId") or None, max_results, query.get("nextToken", "")
        )
        return _dumps({"requestId": request_id, **body})

    return await _answer(request, "ListWorkspaces", produce)


async def _list_computes(request: web.Request) -> web.StreamResponse:
    def produce(request: web.Request, fault: FaultKind | None, request_id: str) -> bytes:
        computes = request.app[_service_key].list_livy_computes(
            request.match_info["workspace_id"], request.query.get("regionId") or None
        )
        if fault == "error_code_200":
            return _dumps(
                {
                    "code": "1000500",
                    "message": "Internal error, please try again later.",
                    "requestId": request_id,
                    "data": None,
                }
            )
        return _dumps(
            {
                "code": "1000000",
                "message": "ok",
                "requestId": request_id,
                "data": {"livyComputes": computes},
            }
        )

    return await _answer(request, "ListLivyCompute", produce)


async def _answer(request: web.Request, action: Action, produce: Produce) -> web.StreamResponse:
    """Authenticate, apply the fault, produce the body; count everything in the stats."""
    service = request.app[_service_key]
    service.stats.by_action[action] += 1
    request_id = str(uuid.uuid4()).upper()
    body_in = await request.read() if request.body_exists else b""
    rejected = request.app[_auth_key].check(request, action, body_in)
    if rejected is not None:
        return _error(request, service, request_id, rejected)
    faults = service.faults
    if faults.delay_s > 0:
        await asyncio.sleep(faults.delay_s)
    fault = service.pick_fault(action)
    if fault is not None:
        preempted = _preempting_fault(request, service, request_id, fault)
        if preempted is not None:
            return preempted
        if fault == "slow":
            await asyncio.sleep(faults.slow_s)
    try:
        body = produce(request, fault, request_id)
    except ServiceError as error:
        return _error(request, service, request_id, error)
    if fault == "error_body_200":
        # Some gateways in front of the service wrap an error in an HTTP 200.
        body = _dumps(
            {
                "RequestId": request_id,
                "Code": "ServiceUnavailable",
                "Message": "The request has failed due to a temporary failure of the server.",
            }
        )
    elif fault == "truncated_json":
        body = body[: max(1, len(body) // 2)]
    elif fault == "malformed_json":
        body = _NOT_JSON
    elif fault == "disconnect_mid_body":
        return await _send_part_then_close(request, service, request_id, body)
    service.stats.by_status[200] += 1
    return web.Response(body=body, headers={"Content-Type": _JSON, "x-acs-request-id": request_id})


def _preempting_fault(
    request: web.Request, service: SimulatedService, request_id: str, fault: FaultKind
) -> web.StreamResponse | None:
    """The answer for a fault that replaces the real one, or None if it does not."""
    faults = service.faults
    if fault == "http_500":
        error = ServiceError(500, "InternalError", "The request processing has failed.")
        return _error(request, service, request_id, error)
    if fault == "http_503":
        message = "The request has failed due to a temporary failure of the server."
        return _error(
            request, service, request_id, ServiceError(503, "ServiceUnavailable", message)
        )
    if fault == "throttle_400":
        error = ServiceError(400, "Throttling.User", "Request was denied due to user flow control.")
        extra = {"x-acs-retry-after": str(faults.retry_after_ms)}
        return _error(request, service, request_id, error, extra)
    if fault == "throttle_429":
        error = ServiceError(429, "Throttling", "Request was denied due to request throttling.")
        extra = {"Retry-After": str(max(1, math.ceil(faults.retry_after_ms / 1000)))}
        return _error(request, service, request_id, error, extra)
    if fault == "http_502_html":
        service.stats.by_status[502] += 1
        return web.Response(
            status=502,
            body=_BAD_GATEWAY_HTML,
            headers={"Content-Type": "text/html", "x-acs-request-id": request_id},
        )
    if fault == "disconnect":
        service.stats.by_status[0] += 1
        if request.transport is not None:
            request.transport.abort()
        # Nothing reaches the client: the transport is gone before aiohttp writes this.
        return web.Response(status=204)
    return None


async def _send_part_then_close(
    request: web.Request, service: SimulatedService, request_id: str, body: bytes
) -> web.StreamResponse:
    service.stats.by_status[200] += 1
    response = web.StreamResponse(
        status=200, headers={"Content-Type": _JSON, "x-acs-request-id": request_id}
    )
    response.content_length = len(body)
    await response.prepare(request)
    await response.write(body[: len(body) // 2])
    if request.transport is not None:
        request.transport.close()
    return response


def _error(
    request: web.Request,
    service: SimulatedService,
    request_id: str,
    error: ServiceError,
    extra_headers: Mapping[str, str] | None = None,
) -> web.Response:
    service.stats.by_status[error.status] += 1
    body = {
        "RequestId": request_id,
        "Code": error.code,
        "Message": error.message,
        "HostId": request.host,
    }
    headers = {"Content-Type": _JSON, "x-acs-request-id": request_id, **(extra_headers or {})}
    return web.Response(status=error.status, body=_dumps(body), headers=headers)


async def _unknown(request: web.Request) -> web.Response:
    request_id = str(uuid.uuid4()).upper()
    body = {
        "RequestId": request_id,
        "Code": "InvalidApi.NotFound",
        "Message": f"No API at {request.method} {request.path}.",
        "HostId": request.host,
    }
    return web.Response(
        status=404,
        body=_dumps(body),
        headers={"Content-Type": _JSON, "x-acs-request-id": request_id},
    )


def _dumps(value: object) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


# -- admin ----------------------------------------------------------------------------------


def _admin(
    handler: Callable[[web.Request, SimulatedService], Awaitable[object]],
) -> Callable[[web.Request], Awaitable[web.Response]]:
    """Wrap an admin handler: JSON answer, 400 for bad input, 404 for unknown ids."""

    async def wrapped(request: web.Request) -> web.Response:
        try:
            result = await handler(request, request.app[_service_key])
        except KeyError as error:
            status, result = 404, {"error": f"not found: {error.args[0]}"}
        except (ValueError, TypeError) as error:
            status, result = 400, {"error": str(error)}
        else:
            status = 200
        request_id = str(uuid.uuid4()).upper()
        return web.json_response(result, status=status, headers={"x-acs-request-id": request_id})

    return wrapped


async def _json_body(request: web.Request) -> dict[str, Any]:
    if not request.body_exists:
        return {}
    try:
        body = await request.json()
    except json.JSONDecodeError as error:
        raise ValueError(f"body is not JSON: {error}") from None
    if not isinstance(body, dict):
        raise ValueError("body must be a JSON object")
    return body


def _require(body: Mapping[str, Any], name: str, kind: type) -> Any:
    value = body.get(name)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise ValueError(f"{name} must be a {kind.__name__}")
    return value


@_admin
async def _admin_stats(request: web.Request, service: SimulatedService) -> object:
    return service.stats.snapshot()


@_admin
async def _admin_stats_reset(request: web.Request, service: SimulatedService) -> object:
    service.stats.reset()
    return service.stats.snapshot()


@_admin
async def _admin_faults(request: web.Request, service: SimulatedService) -> object:
    """POST body: {"reset", "rates": {kind: rate}, "forced": [kind | {kind, count}], ...}."""
    if request.method == "POST":
        body = await _json_body(request)
        faults = service.faults
        if body.get("reset"):
            faults.clear()
        for kind, rate in dict(body.get("rates") or {}).items():
            faults.set_rate(_fault_kind(kind), float(rate))
        for item in body.get("forced") or []:
            if isinstance(item, str):
                faults.force(_fault_kind(item))
            else:
                faults.force(_fault_kind(item.get("kind")), int(item.get("count", 1)))
        for name in ("delay_s", "slow_s"):
            if name in body:
                setattr(faults, name, float(body[name]))
        if "retry_after_ms" in body:
            faults.retry_after_ms = int(body["retry_after_ms"])
    return service.faults.snapshot()


def _fault_kind(value: object) -> FaultKind:
    for kind in FAULT_KINDS:
        if value == kind:
            return kind
    raise ValueError(f"unknown fault kind {value!r}; known: {', '.join(FAULT_KINDS)}")


_SETTINGS: Final = {
    "unordered": bool,
    "reshuffle_per_request": bool,
    "quirks": bool,
    "new_sessions_per_list_request": int,
    "expire_per_list_request": int,
    "new_sessions_per_minute": float,
}


@_admin
async def _admin_settings(request: web.Request, service: SimulatedService) -> object:
    """Listing order, quirks and drift, readable and settable at runtime."""
    if request.method == "POST":
        body = await _json_body(request)
        for name, value in body.items():
            kind = _SETTINGS.get(name)
            if kind is None:
                raise ValueError(f"unknown setting {name!r}; known: {', '.join(_SETTINGS)}")
            setattr(service, name, kind(value))
    return {name: getattr(service, name) for name in _SETTINGS}


@_admin
async def _admin_advance(request: web.Request, service: SimulatedService) -> object:
    service.advance(float(request.query.get("seconds", "0")))
    return {"now_ms": service.now_ms}


@_admin
async def _admin_sessions(request: web.Request, service: SimulatedService) -> object:
    body = await _json_body(request)
    state = body.get("state")
    if state is not None and not isinstance(state, str):
        raise ValueError("state must be a string")
    ids = service.add_sessions(
        _require(body, "workspace_id", str),
        _require(body, "compute_id", str),
        _require(body, "count", int),
        state=state,
    )
    return {"session_ids": ids}


@_admin
async def _admin_finish(request: web.Request, service: SimulatedService) -> object:
    body = await _json_body(request)
    state = body.get("state", "terminated")
    if state not in FINAL_STATES:
        raise ValueError(f"state must be one of {sorted(FINAL_STATES)}")
    ids = _require(body, "session_ids", list)
    for session_id in ids:
        service.session(str(session_id))  # all-or-nothing: 404 before changing any
    for session_id in ids:
        service.finish(str(session_id), state)
    return {"finished": len(ids)}


@_admin
async def _admin_expire(request: web.Request, service: SimulatedService) -> object:
    body = await _json_body(request)
    expired = service.expire_oldest(
        _require(body, "workspace_id", str),
        _require(body, "compute_id", str),
        _require(body, "count", int),
    )
    return {"expired": expired}


@_admin
async def _admin_state(request: web.Request, service: SimulatedService) -> object:
    return service.summary()
