"""The EMR Serverless Spark API client: one pooled aiohttp session, signed requests,
timeouts, bounded retries with backoff and jitter, and a process-wide rate limit.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, TypeVar
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
from harvester.errors import ApiError, ApiInvalidResponse, ApiRejected, ApiUnavailable
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
T = TypeVar("T")
#: turns an HTTP 200 body into a result, raising ApiUnavailable (retry) or ApiRejected (final)
Decoder = Callable[[bytes, Mapping[str, str], str], T]
#: a totalCount above this is not a count the service could mean; paging to it would never end
MAX_TOTAL_COUNT: Final = 100_000_000
#: error codes inside an HTTP 200 that say the service hiccuped: retry like a 5xx
TRANSIENT_CODES: Final = ("InternalError", "ServiceUnavailable", "ServiceBusy", "Throttling")
#: what ListLivyCompute says in `code` on success; 10005xx are its internal errors
GATEWAYS_OK_CODE: Final = "1000000"
GATEWAYS_TRANSIENT_CODE_PREFIX: Final = "10005"


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
        data = parse_json(body)
    except ValueError:
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


def parse_json(body: bytes) -> Any:
    """Parse a body: orjson first (fast), stdlib json when orjson refuses (pure).

    orjson rejects text the service does send now and then, like a lone UTF-16 surrogate
    escape (`"\\ud800"`) or NaN; the stdlib reads those and normalization cleans the values,
    so one odd character never costs a whole page. Raises ValueError for non-JSON bodies.
    """
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        pass
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise ValueError(f"not valid JSON ({type(exc).__name__})") from None


def decode_body(body: bytes, headers: Mapping[str, str], *, target: str) -> dict[str, Any]:
    """The JSON object of an HTTP 200 answer, or the error that says what is wrong (pure).

    A body that is not JSON is a transport accident (cut or garbled): ApiUnavailable, retried.
    JSON that is not an object: ApiInvalidResponse. An error `Code` inside the 200: judged
    as a 4xx would be, except codes that mean a transient failure, which are retried.
    """
    try:
        data = parse_json(body)
    except ValueError:
        raise ApiUnavailable(f"{target}: the answer was not valid JSON") from None
    if not isinstance(data, dict):
        raise ApiInvalidResponse(
            f"{target}: the answer was JSON but not an object ({type(data).__name__})"
        )
    code = data.get("Code")
    if code not in (None, ""):
        code_text = str(code)
        status = 503 if code_text.startswith(TRANSIENT_CODES) else 400
        raise classify_error(status, headers, orjson.dumps(_error_view(data)), target=target)
    return data


def _error_view(data: Mapping[str, Any]) -> dict[str, str]:
    """Only the error fields of a body, as text, so classify_error can read them."""
    return {k: str(data[k])[:500] for k in ("Code", "Message", "RequestId") if k in data}


def parse_total_count(value: object, *, target: str) -> int:
    """totalCount as a non-negative int; digits in text and integral floats pass (pure)."""
    total: object = value
    if isinstance(value, str) and value.strip().isdigit() and value.strip().isascii():
        total = int(value.strip())
    elif isinstance(value, float) and value.is_integer():
        total = int(value)
    if isinstance(total, bool) or not isinstance(total, int) or not 0 <= total <= MAX_TOTAL_COUNT:
        shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:40] + "..."
        raise ApiInvalidResponse(f"{target}: 'totalCount' in the answer is not a count: {shown}")
    return total


def decode_sessions_page(
    body: bytes, headers: Mapping[str, str], *, page_size: int, target: str
) -> SessionsPage:
    """A ListLivyComputeSessions answer, shape-checked (pure: no network, property-tested).

    Raises ApiUnavailable (retry) or ApiInvalidResponse; records are not inspected here:
    normalization skips and counts the ones that are not sessions.
    """
    data = decode_body(body, headers, target=target)
    sessions = data.get("sessions")
    if sessions is None:
        sessions = []
    if not isinstance(sessions, list):
        raise ApiInvalidResponse(
            f"{target}: 'sessions' in the answer is not a list ({type(sessions).__name__})"
        )
    if len(sessions) > page_size:
        # We cannot know which pages the surplus belongs to, so completeness is unprovable.
        raise ApiInvalidResponse(
            f"{target}: the page holds {len(sessions)} sessions, more than the pageSize "
            f"{page_size} asked for"
        )
    total = parse_total_count(data.get("totalCount"), target=target)
    request_id = data.get("requestId")
    return SessionsPage(
        sessions=sessions,
        total_count=total,
        request_id=str(request_id)[:200] if request_id is not None else None,
    )


def decode_gateways(
    body: bytes, headers: Mapping[str, str], *, target: str
) -> list[dict[str, Any]]:
    """A ListLivyCompute answer: its `code` must say success; 10005xx codes are retried."""
    data = decode_body(body, headers, target=target)
    code = str(data.get("code", ""))
    if code != GATEWAYS_OK_CODE:
        # This operation reports failure inside an HTTP 200.
        message = str(data.get("message") or "")[:500]
        text = f"{target}: the service answered code {code or 'missing'}: {message}"
        if code.startswith(GATEWAYS_TRANSIENT_CODE_PREFIX):
            raise ApiUnavailable(text)
        raise ApiRejected(
            text, code=code or None, request_id=str(data.get("requestId") or "")[:200] or None
        )
    payload = data.get("data") or {}
    gateways = payload.get("livyComputes") if isinstance(payload, dict) else None
    if gateways is None:
        return []
    if not isinstance(gateways, list):
        raise ApiInvalidResponse(f"{target}: 'livyComputes' in the answer is not a list")
    return [item for item in gateways if isinstance(item, dict)]


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
        # The retry policy is the same for every call: built once, not per request.
        self._retry = retry_if_exception_type(ApiUnavailable)
        self._stop = stop_after_attempt(settings.max_attempts) | stop_before_delay(
            settings.retry_budget
        )
        self._wait = _wait_s(wait_exponential_jitter(multiplier=0.5, max=30.0, jitter=1.0))

    @classmethod
    @asynccontextmanager
    async def open(
        cls, settings: ApiSettings, credentials: CredentialsProvider
    ) -> AsyncIterator[ApiClient]:
        """A client with its own pooled HTTP session, closed on exit."""
        # Without a CA bundle, aiohttp's own verifying context (made when it is imported:
        # the system CAs, nothing else) serves; a second copy costs ~15 ms and memory.
        ssl_context: ssl.SSLContext | bool = (
            ssl.create_default_context(cafile=str(settings.ca_bundle))
            if settings.ca_bundle
            else True
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
        decode: Decoder[T],
    ) -> T:
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
            result = decode(body, response_headers, target)
        except ApiUnavailable as exc:
            self._observe(action, "throttled" if exc.throttled else "bad_body")
            if exc.throttled:
                self.stats.throttled += 1
            raise
        except ApiError:
            self._observe(action, "bad_body")
            raise
        self._observe(action, "200")
        return result

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
        """One operation with retries; returns the decoded body (a JSON object)."""
        return await self.call_decoded(
            action, region_id, path, query, _decode_object, target=target, tally=tally
        )

    async def call_decoded(
        self,
        action: str,
        region_id: str,
        path: str,
        query: Mapping[str, str],
        decode: Decoder[T],
        *,
        target: str,
        tally: RequestTally | None = None,
    ) -> T:
        """One operation with retries; `decode` runs inside each attempt, so a garbled
        answer that decoding refuses as transient (ApiUnavailable) is asked for again."""
        retrying = AsyncRetrying(  # per call: it holds the state of this call's attempts
            retry=self._retry,
            stop=self._stop,
            wait=self._wait,
            reraise=True,
            before_sleep=self._before_sleep,
        )
        async for attempt in retrying:
            with attempt:
                return await self._attempt(action, region_id, path, query, target, tally, decode)
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

        def decode(body: bytes, headers: Mapping[str, str], target: str) -> SessionsPage:
            return decode_sessions_page(body, headers, page_size=page_size, target=target)

        return await self.call_decoded(
            "ListLivyComputeSessions", gateway.region_id, path, query, decode,
            target=target, tally=tally,
        )  # fmt: skip

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
        return await self.call_decoded(
            "ListLivyCompute", region_id, path, {"regionId": region_id}, _decode_gateways,
            target=target,
        )  # fmt: skip


def _decode_object(body: bytes, headers: Mapping[str, str], target: str) -> dict[str, Any]:
    return decode_body(body, headers, target=target)


def _decode_gateways(body: bytes, headers: Mapping[str, str], target: str) -> list[dict[str, Any]]:
    return decode_gateways(body, headers, target=target)
