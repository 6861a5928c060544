"""The EMR Serverless Spark API client: one pooled aiohttp session, signed requests,
timeouts, bounded retries with backoff and jitter, and a process-wide rate limit.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import quote, urlsplit

import aiohttp
import orjson
from aiolimiter import AsyncLimiter
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    stop_before_delay,
    wait_exponential_jitter,
)
from yarl import URL

from harvester import __version__
from harvester.api.credentials import CredentialsProvider
from harvester.api.signing import canonical_query, sign_headers
from harvester.errors import ApiInvalidResponse, ApiRejected, ApiUnavailable
from harvester.records import Gateway
from harvester.settings import ApiSettings

log = logging.getLogger(__name__)

API_VERSION: Final = "2023-08-08"
USER_AGENT: Final = f"harvester/{__version__}"
#: codes that mean the key pair, token or signature is wrong: retrying cannot help
CREDENTIAL_CODES: Final = (
    "SignatureDoesNotMatch",
    "IncompleteSignature",
    "InvalidAccessKeyId",
    "InvalidSecurityToken",
    "InvalidAuthorization",
    "Forbidden.AccessKey",
)
CLOCK_CODES: Final = ("InvalidTimeStamp",)
#: every attempt signs with a fresh nonce, so a "used" nonce means the transport re-sent
#: our request (aiohttp silently retries a GET once after a dropped connection): retry
NONCE_REUSED: Final = "SignatureNonceUsed"
MAX_RETRY_AFTER_S: Final = 300.0


def endpoint_for(region_id: str, *, vpc: bool = False) -> str:
    """The public (or VPC) endpoint of a region."""
    host = "emr-serverless-spark-vpc" if vpc else "emr-serverless-spark"
    return f"https://{host}.{region_id}.aliyuncs.com"


@dataclass(slots=True)
class RequestStats:
    """Counters of what the client did, for summaries and metrics."""

    requests: int = 0
    retries: int = 0
    throttled: int = 0
    by_outcome: dict[str, int] = field(default_factory=dict)


@dataclass(slots=True)
class RequestTally:
    """Requests made on behalf of one caller (a run), retries included."""

    requests: int = 0


@dataclass(frozen=True, slots=True)
class SessionsPage:
    """One decoded page of ListLivyComputeSessions."""

    sessions: list[Any]
    total_count: int
    request_id: str | None


def _retry_after_s(headers: Mapping[str, str]) -> float | None:
    """x-acs-retry-after is in milliseconds; Retry-After in seconds."""
    for name, scale in (("x-acs-retry-after", 0.001), ("Retry-After", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value) * scale
        except ValueError:
            continue
        if seconds >= 0:
            return min(seconds, MAX_RETRY_AFTER_S)
    return None


def _error_fields(body: bytes) -> tuple[str | None, str | None, str | None]:
    """(code, message, request id) from an error body in either key case, if it is JSON."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None, None, None
    if not isinstance(data, dict):
        return None, None, None

    def pick(*keys: str) -> str | None:
        for key in keys:
            value = data.get(key)
            if value not in (None, ""):
                return str(value)[:500]
        return None

    return pick("Code", "code"), pick("Message", "message"), pick("RequestId", "requestId")


def classify_error(
    status: int, headers: Mapping[str, str], body: bytes, *, target: str
) -> ApiUnavailable | ApiRejected:
    """Turn a non-200 answer into the exception that says what to do about it (pure)."""
    code, message, request_id = _error_fields(body)
    request_id = request_id or headers.get("x-acs-request-id")
    detail = f"HTTP {status}"
    if code:
        detail += f" {code}"
    if message:
        detail += f": {message}"
    if request_id:
        detail += f" (RequestId {request_id})"
    throttled = status == 429 or (code or "").startswith("Throttling")
    if throttled or status >= 500 or code == NONCE_REUSED:
        return ApiUnavailable(
            f"{target}: {'throttled' if throttled else 'service error'}, {detail}",
            throttled=throttled,
            retry_after_s=_retry_after_s(headers),
        )
    if code and code.startswith(CREDENTIAL_CODES):
        text = (
            f"{target}: the service rejected the request signature or credentials ({detail}); "
            "check the AccessKey id and secret (or STS token) the harvester runs with"
        )
    elif code and code.startswith(CLOCK_CODES):
        text = f"{target}: the service rejected the request time ({detail}); check the clock"
    elif status == 404:
        text = f"{target}: not found: the workspace or gateway does not exist ({detail})"
    elif status == 403:
        text = f"{target}: access denied; grant the RAM user list permissions ({detail})"
    else:
        text = f"{target}: request rejected ({detail})"
    return ApiRejected(text, status=status, code=code, request_id=request_id)


def _wait_s(backoff: Callable[[RetryCallState], float]) -> Callable[[RetryCallState], float]:
    """Exponential backoff with jitter, but never shorter than the service asked for."""

    def wait(state: RetryCallState) -> float:
        seconds = backoff(state)
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, ApiUnavailable) and exc.retry_after_s is not None:
            seconds = max(seconds, exc.retry_after_s)
        return seconds

    return wait


class ApiClient:
    """Calls the three list operations; safe to share between concurrent targets."""

    def __init__(
        self,
        http: aiohttp.ClientSession,
        credentials: CredentialsProvider,
        settings: ApiSettings,
    ) -> None:
        self._http = http
        self._credentials = credentials
        self._settings = settings
        self._limiter = AsyncLimiter(settings.requests_per_second, 1.0)
        self._slots = asyncio.Semaphore(settings.max_concurrency)
        self._timeout = aiohttp.ClientTimeout(
            total=settings.connect_timeout + settings.read_timeout,
            sock_connect=settings.connect_timeout,
            sock_read=settings.read_timeout,
        )
        self.stats = RequestStats()
        #: called after every attempt with (operation, outcome) for metrics
        self.observers: list[Callable[[str, str], None]] = []

    @classmethod
    @asynccontextmanager
    async def open(
        cls, settings: ApiSettings, credentials: CredentialsProvider
    ) -> AsyncIterator[ApiClient]:
        """A client with its own pooled HTTP session, closed on exit."""
        ssl_context = ssl.create_default_context(
            cafile=str(settings.ca_bundle) if settings.ca_bundle else None
        )
        connector = aiohttp.TCPConnector(
            limit=settings.max_concurrency, ssl=ssl_context, ttl_dns_cache=300
        )
        async with aiohttp.ClientSession(
            connector=connector, json_serialize=lambda v: orjson.dumps(v).decode()
        ) as http:
            yield cls(http, credentials, settings)

    def _base_url(self, region_id: str) -> str:
        return self._settings.endpoint or endpoint_for(region_id, vpc=self._settings.vpc)

    async def _attempt(
        self,
        action: str,
        region_id: str,
        path: str,
        query: Mapping[str, str],
        target: str,
        tally: RequestTally | None,
    ) -> Any:
        base = urlsplit(self._base_url(region_id))
        full_path = base.path.rstrip("/") + path
        credentials = await self._credentials.get()
        now = datetime.now(UTC)
        headers = sign_headers(
            credentials,
            "GET",
            full_path,
            query,
            {"host": base.netloc, "accept": "application/json", "user-agent": USER_AGENT},
            action=action,
            version=API_VERSION,
            date=now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            nonce=uuid.uuid4().hex,
        )
        # Send the canonical query that was signed; yarl must not re-encode it.
        url = URL(
            f"{base.scheme}://{base.netloc}{full_path}?{canonical_query(query)}", encoded=True
        )
        async with self._slots, self._limiter:
            self.stats.requests += 1
            if tally is not None:
                tally.requests += 1
            try:
                async with self._http.get(
                    url, headers=headers, timeout=self._timeout, allow_redirects=False
                ) as response:
                    body = await response.read()
                    status = response.status
                    response_headers = response.headers
            except TimeoutError:
                self._observe(action, "timeout")
                raise ApiUnavailable(f"{target}: no answer within the timeout") from None
            except aiohttp.ClientError as exc:
                self._observe(action, "transport_error")
                raise ApiUnavailable(
                    f"{target}: connection failed ({type(exc).__name__})"
                ) from None
        if status != 200:
            error = classify_error(status, response_headers, body, target=target)
            if isinstance(error, ApiUnavailable) and error.throttled:
                self.stats.throttled += 1
                self._observe(action, "throttled")
            else:
                self._observe(action, str(status))
            raise error
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            # A cut or garbled body is a transport accident: the next attempt may be whole.
            self._observe(action, "bad_body")
            raise ApiUnavailable(f"{target}: the answer was not valid JSON") from None
        if not isinstance(data, dict):
            self._observe(action, "bad_body")
            raise ApiInvalidResponse(f"{target}: the answer was JSON but not an object")
        code = data.get("Code")
        if isinstance(code, str) and code:
            # An error carried inside an HTTP 200: judge it as if it came with a 4xx.
            self._observe(action, "error_in_200")
            raise classify_error(
                429 if code.startswith("Throttling") else 400, response_headers, body, target=target
            )
        self._observe(action, "200")
        return data

    def _observe(self, operation: str, outcome: str) -> None:
        self.stats.by_outcome[outcome] = self.stats.by_outcome.get(outcome, 0) + 1
        for observer in self.observers:
            observer(operation, outcome)

    async def call(
        self,
        action: str,
        region_id: str,
        path: str,
        query: Mapping[str, str],
        *,
        target: str,
        tally: RequestTally | None = None,
    ) -> dict[str, Any]:
        """One operation with retries; returns the decoded body."""
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(ApiUnavailable),
            stop=stop_after_attempt(self._settings.max_attempts)
            | stop_before_delay(self._settings.retry_budget),
            wait=_wait_s(wait_exponential_jitter(multiplier=0.5, max=30.0, jitter=1.0)),
            reraise=True,
            before_sleep=self._before_sleep,
        )
        async for attempt in retrying:
            with attempt:
                data: dict[str, Any] = await self._attempt(
                    action, region_id, path, query, target, tally
                )
                return data
        raise AssertionError("unreachable: tenacity either returns or re-raises")

    def _before_sleep(self, state: RetryCallState) -> None:
        self.stats.retries += 1
        exc = state.outcome.exception() if state.outcome else None
        sleep_s = state.next_action.sleep if state.next_action else 0.0
        log.warning("retrying in %.1fs after attempt %d: %s", sleep_s, state.attempt_number, exc)

    async def list_sessions(
        self, gateway: Gateway, page_num: int, page_size: int, tally: RequestTally | None = None
    ) -> SessionsPage:
        """One page of a gateway's sessions, decoded and shape-checked."""
        path = (
            f"/api/v1/workspaces/{quote(gateway.workspace_id, safe='')}"
            f"/livycompute/{quote(gateway.compute_id, safe='')}/session"
        )
        query = {
            "pageNum": str(page_num),
            "pageSize": str(page_size),
            "regionId": gateway.region_id,
        }
        target = f"gateway {gateway.key} ({gateway.region_id})"
        data = await self.call(
            "ListLivyComputeSessions", gateway.region_id, path, query, target=target, tally=tally
        )
        sessions = data.get("sessions")
        if sessions is None:
            sessions = []
        if not isinstance(sessions, list):
            raise ApiInvalidResponse(f"{target}: 'sessions' in the answer is not a list")
        total = data.get("totalCount")
        if isinstance(total, str) and total.strip().isdigit():
            total = int(total)
        if isinstance(total, bool) or not isinstance(total, int) or total < 0:
            raise ApiInvalidResponse(f"{target}: 'totalCount' in the answer is not a count")
        request_id = data.get("requestId")
        return SessionsPage(
            sessions=sessions,
            total_count=total,
            request_id=str(request_id) if request_id is not None else None,
        )

    async def list_workspaces(self, region_id: str, page_size: int = 100) -> list[dict[str, Any]]:
        """Every workspace of a region (token pagination)."""
        workspaces: list[dict[str, Any]] = []
        token: str | None = None
        seen_tokens: set[str] = set()
        target = f"workspaces of region {region_id}"
        while True:
            query = {"regionId": region_id, "maxResults": str(page_size)}
            if token:
                query["nextToken"] = token
            data = await self.call(
                "ListWorkspaces", region_id, "/api/v1/workspaces", query, target=target
            )
            page = data.get("workspaces") or []
            if not isinstance(page, list):
                raise ApiInvalidResponse(f"{target}: 'workspaces' in the answer is not a list")
            workspaces.extend(item for item in page if isinstance(item, dict))
            token = data.get("nextToken") or None
            if not token:
                return workspaces
            if token in seen_tokens:
                raise ApiInvalidResponse(f"{target}: the service repeated a nextToken")
            seen_tokens.add(token)

    async def list_gateways(self, region_id: str, workspace_id: str) -> list[dict[str, Any]]:
        """Every Livy Gateway of a workspace; the body's `code` must say success."""
        target = f"gateways of workspace {workspace_id} ({region_id})"
        path = f"/api/interactive/v1/workspace/{quote(workspace_id, safe='')}/livycompute"
        data = await self.call(
            "ListLivyCompute", region_id, path, {"regionId": region_id}, target=target
        )
        code = str(data.get("code", ""))
        if code != "1000000":
            # This operation reports failure inside an HTTP 200.
            message = str(data.get("message") or "")[:500]
            raise ApiRejected(
                f"{target}: the service answered code {code or 'missing'}: {message}",
                code=code or None,
                request_id=str(data.get("requestId") or "") or None,
            )
        payload = data.get("data") or {}
        gateways = payload.get("livyComputes") if isinstance(payload, dict) else None
        if gateways is None:
            return []
        if not isinstance(gateways, list):
            raise ApiInvalidResponse(f"{target}: 'livyComputes' in the answer is not a list")
        return [item for item in gateways if isinstance(item, dict)]
