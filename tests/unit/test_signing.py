"""ACS3-HMAC-SHA256 signing: the DESIGN §3 vector, the official SDK's signer, and verify().

The reference signer is the official SDK's own code, in `alibabacloud_tea_openapi` 0.4.x
(pulled in by `alibabacloud_emr_serverless_spark20230808` 2.3.0):

- `alibabacloud_tea_openapi.utils.Utils.get_authorization(request, sign_type, payload, ak,
  secret)` builds the canonical request and the Authorization value;
- `alibabacloud_tea_openapi.utils.get_canonical_query_string` and
  `get_canonicalized_headers` are its two helpers;
- `alibabacloud_tea_openapi.client.Client.do_request` is the step of the client that fills
  the headers and calls `get_authorization` (the "v3"/ACS3 path used by ROA and RPC alike).

None of these imports emits a warning on Python 3.11, so no local warning filter is needed
under `filterwarnings = error`. (`Utils.get_timestamp` calls `datetime.utcnow()`, which is
deprecated from Python 3.12; the tests that drive the SDK client patch it out.)
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any
from unittest import mock

import pytest
from alibabacloud_emr_serverless_spark20230808 import models as emr_models
from alibabacloud_emr_serverless_spark20230808.client import Client as EmrClient
from alibabacloud_tea_openapi import models as openapi_models
from alibabacloud_tea_openapi.utils import Utils as SdkUtils
from alibabacloud_tea_openapi.utils import get_canonical_query_string as sdk_canonical_query
from darabonba.core import DaraCore
from darabonba.exceptions import UnretryableException
from darabonba.request import DaraRequest
from darabonba.runtime import RuntimeOptions
from darabonba.url import Url as DaraURL
from hypothesis import example, given, settings
from hypothesis import strategies as st

from harvester.api.signing import (
    ALGORITHM,
    EMPTY_BODY_SHA256,
    Credentials,
    authorization,
    canonical_query,
    parse_authorization,
    percent_encode,
    sign_headers,
    verify,
)

# --- DESIGN §3 test vector -------------------------------------------------------------

VECTOR_CREDENTIALS = Credentials("AKIDEXAMPLE", "SECRETEXAMPLE")
VECTOR_PATH = "/api/v1/workspaces/w-abc123/livycompute/lc-def456/session"
VECTOR_QUERY = {"pageNum": "1", "pageSize": "20", "regionId": "cn-hangzhou"}
VECTOR_HOST = "emr-serverless-spark.cn-hangzhou.aliyuncs.com"
VECTOR_BASE_HEADERS = {
    "accept": "application/json",
    "host": VECTOR_HOST,
    "user-agent": "harvester-test/1.0",
    "x-acs-credentials-provider": "static_ak",
}
VECTOR_ACTION = "ListLivyComputeSessions"
VECTOR_VERSION = "2023-08-08"
VECTOR_DATE = "2024-01-02T03:04:05Z"
VECTOR_NONCE = "0123456789abcdef0123456789abcdef"
VECTOR_ALL_HEADERS = {
    **VECTOR_BASE_HEADERS,
    "x-acs-action": VECTOR_ACTION,
    "x-acs-version": VECTOR_VERSION,
    "x-acs-date": VECTOR_DATE,
    "x-acs-signature-nonce": VECTOR_NONCE,
    "x-acs-content-sha256": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
}
VECTOR_SIGNED_HEADERS = (
    "accept;host;user-agent;x-acs-action;x-acs-content-sha256;x-acs-credentials-provider;"
    "x-acs-date;x-acs-signature-nonce;x-acs-version"
)
VECTOR_SIGNATURE = "211e23b10970352e63da4b2a0f20226f4fc705ca9b8f205e09c372bf7742da51"
VECTOR_AUTHORIZATION = (
    f"ACS3-HMAC-SHA256 Credential=AKIDEXAMPLE,SignedHeaders={VECTOR_SIGNED_HEADERS},"
    f"Signature={VECTOR_SIGNATURE}"
)


def _sign_vector(credentials: Credentials = VECTOR_CREDENTIALS) -> dict[str, str]:
    return sign_headers(
        credentials,
        "GET",
        VECTOR_PATH,
        VECTOR_QUERY,
        VECTOR_BASE_HEADERS,
        action=VECTOR_ACTION,
        version=VECTOR_VERSION,
        date=VECTOR_DATE,
        nonce=VECTOR_NONCE,
    )


def test_empty_body_sha256_constant() -> None:
    assert hashlib.sha256(b"").hexdigest() == EMPTY_BODY_SHA256
    assert VECTOR_ALL_HEADERS["x-acs-content-sha256"] == EMPTY_BODY_SHA256
    assert ALGORITHM == "ACS3-HMAC-SHA256"


def test_design_vector_via_sign_headers() -> None:
    headers = _sign_vector()
    assert headers == {**VECTOR_ALL_HEADERS, "authorization": VECTOR_AUTHORIZATION}


def test_design_vector_via_authorization() -> None:
    value = authorization(VECTOR_CREDENTIALS, "GET", VECTOR_PATH, VECTOR_QUERY, VECTOR_ALL_HEADERS)
    assert value == VECTOR_AUTHORIZATION


def test_design_vector_header_names_are_case_insensitive() -> None:
    """Header names are lower-cased and values trimmed before signing."""
    shouty = {name.upper(): f"  {value} " for name, value in VECTOR_ALL_HEADERS.items()}
    value = authorization(VECTOR_CREDENTIALS, "get", VECTOR_PATH, VECTOR_QUERY, shouty)
    assert value == VECTOR_AUTHORIZATION


# --- The official SDK's signer ---------------------------------------------------------


def _sdk_authorization(
    credentials: Credentials,
    method: str,
    path: str,
    query: dict[str, str],
    headers: dict[str, str],
    body: bytes,
) -> str:
    """What the SDK's `Utils.get_authorization` produces for exactly these request parts.

    The SDK signs *every* non-None header present in `request.headers` (lower-cased, values
    trimmed, sorted; values of names that differ only in case are joined by ','). There is
    no allow-list, so giving both signers the same dict is an apples-to-apples comparison.
    """
    request = DaraRequest()
    request.method = method
    request.pathname = path
    request.query = dict(query)
    request.headers = dict(headers)
    payload = hashlib.sha256(body).hexdigest()
    result: str = SdkUtils.get_authorization(
        request, ALGORITHM, payload, credentials.access_key_id, credentials.access_key_secret
    )
    return result


def test_design_vector_matches_sdk_get_authorization() -> None:
    sdk = _sdk_authorization(
        VECTOR_CREDENTIALS, "GET", VECTOR_PATH, VECTOR_QUERY, VECTOR_ALL_HEADERS, b""
    )
    assert sdk == VECTOR_AUTHORIZATION


class _StopBeforeSending(Exception):
    """Raised in place of the SDK's HTTP call once the signed request has been captured."""


@contextmanager
def _sdk_client_capture(
    date: str = VECTOR_DATE, nonce: str = VECTOR_NONCE, user_agent: str = "harvester-test/1.0"
) -> Iterator[list[DaraRequest]]:
    """Let the real SDK client build and sign a request, capture it, never send it.

    Date, nonce and user-agent are pinned (the SDK's own date helper is also deprecated
    from Python 3.12); the HTTP call is replaced by a capture that aborts the request.
    """
    captured: list[DaraRequest] = []

    def fake_do_action(request: DaraRequest, runtime: dict[str, Any]) -> None:
        captured.append(request)
        raise _StopBeforeSending

    with (
        mock.patch.object(DaraCore, "do_action", staticmethod(fake_do_action)),
        mock.patch.object(SdkUtils, "get_timestamp", staticmethod(lambda: date)),
        mock.patch.object(SdkUtils, "get_nonce", staticmethod(lambda: nonce)),
        mock.patch.object(SdkUtils, "get_user_agent", staticmethod(lambda ua: user_agent)),
    ):
        yield captured


def _sdk_client_list_sessions(
    credentials: Credentials,
    endpoint: str,
    workspace_id: str,
    livy_compute_id: str,
    request: emr_models.ListLivyComputeSessionsRequest,
    captured: list[DaraRequest],
) -> DaraRequest:
    config = openapi_models.Config(
        access_key_id=credentials.access_key_id,
        access_key_secret=credentials.access_key_secret,
        security_token=credentials.security_token,
        endpoint=endpoint,
    )
    client = EmrClient(config)
    with pytest.raises(UnretryableException):
        client.list_livy_compute_sessions_with_options(
            workspace_id, livy_compute_id, request, {}, RuntimeOptions(autoretry=False)
        )
    assert len(captured) == 1
    return captured[0]


def test_design_vector_is_what_the_sdk_client_sends() -> None:
    """The real client (date, nonce, user-agent pinned) produces the DESIGN §3 vector."""
    with _sdk_client_capture() as captured:
        sent = _sdk_client_list_sessions(
            VECTOR_CREDENTIALS,
            VECTOR_HOST,
            "w-abc123",
            "lc-def456",
            emr_models.ListLivyComputeSessionsRequest(
                page_num=1, page_size=20, region_id="cn-hangzhou"
            ),
            captured,
        )
    assert sent.method == "GET"
    assert sent.pathname == VECTOR_PATH
    assert sent.query == VECTOR_QUERY
    sdk_headers = {name.lower(): value for name, value in sent.headers.items()}
    assert sdk_headers == {**VECTOR_ALL_HEADERS, "authorization": VECTOR_AUTHORIZATION}
    assert _sign_vector() == sdk_headers


# Characters the brief asks for in particular, mixed with arbitrary Unicode text (no lone
# surrogates: neither side can UTF-8-encode those, and no real request carries them).
_TRICKY = " ~*/+=&%?#:;,@!$'()[]\"<>\\^`{|}\t"
_any_char = st.characters(codec="utf-8")
_text = st.text(st.one_of(st.sampled_from(_TRICKY), _any_char), max_size=16)
_ids = st.one_of(
    st.from_regex(r"(w|lc)-[a-z0-9]{1,16}", fullmatch=True),
    st.text(st.one_of(st.sampled_from(_TRICKY), _any_char), min_size=1, max_size=12),
)
_queries = st.dictionaries(
    st.one_of(
        st.sampled_from(["pageNum", "pageSize", "regionId", "maxResults", "nextToken", "Z", "a"]),
        st.text(st.one_of(st.sampled_from(_TRICKY), _any_char), min_size=1, max_size=8),
    ),
    _text,
    max_size=6,
)
_header_values = st.text(
    st.one_of(st.sampled_from(" \t~*/+=&,;:"), st.characters(codec="utf-8")), max_size=24
)
_extra_headers = st.dictionaries(
    st.from_regex(r"x-test-[a-z0-9-]{1,12}", fullmatch=True), _header_values, max_size=4
)
_credentials = st.builds(
    Credentials,
    access_key_id=st.from_regex(r"LTAI[A-Za-z0-9]{8,20}", fullmatch=True),
    access_key_secret=st.text(st.characters(codec="utf-8"), min_size=1, max_size=32),
    security_token=st.one_of(st.none(), st.from_regex(r"[A-Za-z0-9+/=]{1,64}", fullmatch=True)),
)
_bodies = st.one_of(st.just(b""), st.binary(min_size=1, max_size=64))


@settings(max_examples=200, deadline=None)
@given(
    credentials=_credentials,
    workspace_id=_ids,
    livy_compute_id=_ids,
    query=_queries,
    extra_headers=_extra_headers,
    upper_case_names=st.booleans(),
    body=_bodies,
    date=st.from_regex(
        r"20[0-9]{2}-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:[0-5][0-9]Z", fullmatch=True
    ),
    nonce=st.from_regex(r"[0-9a-f]{32}", fullmatch=True),
)
@example(
    credentials=VECTOR_CREDENTIALS,
    workspace_id="w-abc123",
    livy_compute_id="lc-def456",
    query={"next Token": "a b~c*d/e+f=g&h", "Key": "é 中 🙂", "key": ""},
    extra_headers={"x-test-pad": "  spaced  value\t"},
    upper_case_names=True,
    body=b'{"a": 1}',
    date=VECTOR_DATE,
    nonce=VECTOR_NONCE,
)
def test_matches_sdk_signer_on_random_requests(
    credentials: Credentials,
    workspace_id: str,
    livy_compute_id: str,
    query: dict[str, str],
    extra_headers: dict[str, str],
    upper_case_names: bool,
    body: bytes,
    date: str,
    nonce: str,
) -> None:
    """sign_headers/authorization agree with the SDK's get_authorization, header for header."""
    # Path segments encoded with the SDK's own encoder, as its generated client does; the
    # path is signed as sent, so both sides must see the same already-encoded string.
    path = (
        f"/api/v1/workspaces/{DaraURL.percent_encode(workspace_id)}"
        f"/livycompute/{DaraURL.percent_encode(livy_compute_id)}/session"
    )
    headers = {
        "host": "emr-serverless-spark.cn-hangzhou.aliyuncs.com",
        "accept": "application/json",
        "user-agent": "harvester-test/1.0",
        **extra_headers,
    }
    if upper_case_names:
        headers = {name.title(): value for name, value in headers.items()}

    ours = sign_headers(
        credentials,
        "GET",
        path,
        query,
        headers,
        action=VECTOR_ACTION,
        version=VECTOR_VERSION,
        date=date,
        nonce=nonce,
        body=body,
    )
    on_the_wire = {name: value for name, value in ours.items() if name != "authorization"}
    sdk = _sdk_authorization(credentials, "GET", path, query, on_the_wire, body)

    assert ours["authorization"] == sdk
    assert ours["x-acs-content-sha256"] == hashlib.sha256(body).hexdigest()
    # The same headers given with their original (mixed) case sign the same way.
    assert (
        authorization(
            credentials,
            "GET",
            path,
            query,
            {**headers, **{k: v for k, v in on_the_wire.items() if k.startswith("x-acs-")}},
            hashlib.sha256(body).hexdigest(),
        )
        == sdk
    )
    # Our verifier accepts what the SDK signed.
    secrets = {credentials.access_key_id: credentials.access_key_secret}
    assert verify(secrets, "GET", path, query, {**on_the_wire, "Authorization": sdk}, body) is None


@settings(max_examples=200, deadline=None)
@given(query=_queries)
@example(query={"b": " ", "B": "~", "a": "/", "_": "+", "Z": "=&*", "é": "é"})
def test_canonical_query_matches_sdk(query: dict[str, str]) -> None:
    """DESIGN §3's encoding (`quote(v, safe='~')`, raw keys sorted by code point) is the SDK's.

    The SDK's `get_canonical_query_string` does `quote(value, safe='~', encoding='utf-8')`
    on values, leaves keys unencoded and sorts them with `list.sort()` (code point order):
    the same as DESIGN §3 for every character, including space, `~`, `*`, `/`, `+`, `=`, `&`.
    """
    assert canonical_query(query) == sdk_canonical_query(query)


@settings(max_examples=50, deadline=None)
@given(
    credentials=_credentials,
    workspace_id=_ids,
    livy_compute_id=_ids,
    region_id=_text,
    page_num=st.integers(min_value=1, max_value=10_000),
    page_size=st.integers(min_value=1, max_value=100),
)
def test_sdk_client_requests_verify_and_resign_identically(
    credentials: Credentials,
    workspace_id: str,
    livy_compute_id: str,
    region_id: str,
    page_num: int,
    page_size: int,
) -> None:
    """End to end through the real SDK client: we re-derive its Authorization exactly."""
    with _sdk_client_capture() as captured:
        sent = _sdk_client_list_sessions(
            credentials,
            VECTOR_HOST,
            workspace_id,
            livy_compute_id,
            emr_models.ListLivyComputeSessionsRequest(
                page_num=page_num, page_size=page_size, region_id=region_id or None
            ),
            captured,
        )
    headers = {name: value for name, value in sent.headers.items() if name != "Authorization"}
    ours = authorization(credentials, sent.method, sent.pathname, sent.query, headers)
    assert ours == sent.headers["Authorization"]
    secrets = {credentials.access_key_id: credentials.access_key_secret}
    assert verify(secrets, sent.method, sent.pathname, sent.query, sent.headers) is None
    if credentials.security_token:
        assert sent.headers["x-acs-security-token"] == credentials.security_token
        assert sent.headers["x-acs-accesskey-id"] == credentials.access_key_id


# --- STS -------------------------------------------------------------------------------


def test_sts_token_headers_are_sent_and_signed() -> None:
    sts = Credentials("STS.AKID", "SECRETEXAMPLE", security_token="TOKEN+/=")
    headers = _sign_vector(sts)
    assert headers["x-acs-security-token"] == "TOKEN+/="
    assert headers["x-acs-accesskey-id"] == "STS.AKID"
    parsed = parse_authorization(headers["authorization"])
    assert parsed is not None
    assert parsed.access_key_id == "STS.AKID"
    assert "x-acs-security-token" in parsed.signed_headers
    assert "x-acs-accesskey-id" in parsed.signed_headers
    assert verify({"STS.AKID": "SECRETEXAMPLE"}, "GET", VECTOR_PATH, VECTOR_QUERY, headers) is None
    # The token is covered by the signature.
    swapped = {**headers, "x-acs-security-token": "OTHER"}
    assert verify({"STS.AKID": "SECRETEXAMPLE"}, "GET", VECTOR_PATH, VECTOR_QUERY, swapped) == (
        "signature does not match"
    )


@pytest.mark.parametrize("token", [None, ""])
def test_no_sts_headers_without_a_token(token: str | None) -> None:
    headers = _sign_vector(replace(VECTOR_CREDENTIALS, security_token=token))
    assert "x-acs-security-token" not in headers
    assert "x-acs-accesskey-id" not in headers
    assert headers["authorization"] == VECTOR_AUTHORIZATION


# --- verify() --------------------------------------------------------------------------

SECRETS = {"AKIDEXAMPLE": "SECRETEXAMPLE"}
BODY = b'{"hello": "world"}'


def _signed_request(body: bytes = b"") -> tuple[str, dict[str, str], dict[str, str], bytes]:
    headers = sign_headers(
        VECTOR_CREDENTIALS,
        "GET",
        VECTOR_PATH,
        VECTOR_QUERY,
        VECTOR_BASE_HEADERS,
        action=VECTOR_ACTION,
        version=VECTOR_VERSION,
        date=VECTOR_DATE,
        nonce=VECTOR_NONCE,
        body=body,
    )
    return VECTOR_PATH, dict(VECTOR_QUERY), headers, body


@pytest.mark.parametrize("body", [b"", BODY])
def test_verify_accepts_a_valid_request(body: bytes) -> None:
    path, query, headers, body = _signed_request(body)
    assert verify(SECRETS, "GET", path, query, headers, body) is None
    # Header names arrive in any case; unsigned extra headers are allowed.
    wire = {name.title(): value for name, value in headers.items()}
    wire["X-Forwarded-For"] = "10.0.0.1"
    assert verify(SECRETS, "GET", path, query, wire, body) is None


_MISMATCH = "signature does not match"
# (path, query, headers, body, method) of a request as the server receives it.
_Req = tuple[str, dict[str, str], dict[str, str], bytes, str]


def _tamper_query_value(r: _Req) -> _Req:
    return r[0], {**r[1], "pageSize": "100"}, r[2], r[3], r[4]


def _tamper_query_extra(r: _Req) -> _Req:
    return r[0], {**r[1], "extra": "1"}, r[2], r[3], r[4]


def _tamper_signed_header(r: _Req) -> _Req:
    return r[0], r[1], {**r[2], "x-acs-action": "ListWorkspaces"}, r[3], r[4]


def _tamper_date(r: _Req) -> _Req:
    return r[0], r[1], {**r[2], "x-acs-date": "2024-01-02T03:04:06Z"}, r[3], r[4]


def _tamper_path(r: _Req) -> _Req:
    return r[0].replace("lc-def456", "lc-def457"), r[1], r[2], r[3], r[4]


def _tamper_method(r: _Req) -> _Req:
    return r[0], r[1], r[2], r[3], "POST"


def _tamper_body(r: _Req) -> _Req:
    return r[0], r[1], r[2], BODY + b" ", r[4]


def _tamper_body_and_hash(r: _Req) -> _Req:
    body = BODY + b" "
    return (
        r[0],
        r[1],
        {**r[2], "x-acs-content-sha256": hashlib.sha256(body).hexdigest()},
        body,
        r[4],
    )


def _drop_signed_header(r: _Req) -> _Req:
    return r[0], r[1], {k: v for k, v in r[2].items() if k != "accept"}, r[3], r[4]


@pytest.mark.parametrize(
    ("tamper", "reason"),
    [
        pytest.param(_tamper_query_value, _MISMATCH, id="query-value"),
        pytest.param(_tamper_query_extra, _MISMATCH, id="query-extra-param"),
        pytest.param(_tamper_signed_header, _MISMATCH, id="signed-header"),
        pytest.param(_tamper_date, _MISMATCH, id="date"),
        pytest.param(_tamper_path, _MISMATCH, id="path"),
        pytest.param(_tamper_method, _MISMATCH, id="method"),
        pytest.param(_tamper_body, "x-acs-content-sha256 does not match the body", id="body"),
        pytest.param(_tamper_body_and_hash, _MISMATCH, id="body-and-its-hash-header"),
        pytest.param(_drop_signed_header, "a signed header is missing from the request", id="drop"),
    ],
)
def test_verify_rejects_a_tampered_request(tamper: Callable[[_Req], _Req], reason: str) -> None:
    path, query, headers, body = _signed_request(BODY)
    path, query, headers, body, method = tamper((path, query, headers, body, "GET"))
    assert verify(SECRETS, method, path, query, headers, body) == reason


def test_verify_rejects_a_wrong_secret() -> None:
    path, query, headers, body = _signed_request()
    assert verify({"AKIDEXAMPLE": "NOTTHESECRET"}, "GET", path, query, headers, body) == (_MISMATCH)


def test_verify_rejects_an_unknown_key() -> None:
    path, query, headers, body = _signed_request()
    assert verify({"SOMEONEELSE": "SECRETEXAMPLE"}, "GET", path, query, headers, body) == (
        "unknown AccessKey id"
    )


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "garbage",
        "HMAC-SHA256 Credential=AKIDEXAMPLE,SignedHeaders=host;x-acs-date,Signature=00",
        "ACS3-HMAC-SHA256 Credential=AKIDEXAMPLE,SignedHeaders=host;x-acs-date",
        "ACS3-HMAC-SHA256 Credential=AKIDEXAMPLE,SignedHeaders=host;x-acs-date,Signature",
        "ACS3-HMAC-SHA256 SignedHeaders=host;x-acs-date,Signature=00",
    ],
)
def test_verify_rejects_a_malformed_authorization(value: str | None) -> None:
    path, query, headers, body = _signed_request()
    del headers["authorization"]
    if value is not None:
        headers["authorization"] = value
    assert verify(SECRETS, "GET", path, query, headers, body) == (
        "missing or malformed Authorization header"
    )


@pytest.mark.parametrize("unsigned", ["host", "x-acs-date"])
def test_verify_rejects_unsigned_host_or_date(unsigned: str) -> None:
    """A signature that does not cover host (or x-acs-date) is refused even if it is valid."""
    base = {**VECTOR_BASE_HEADERS, "x-acs-date": VECTOR_DATE}
    signed_part = {name: value for name, value in base.items() if name != unsigned}
    value = authorization(VECTOR_CREDENTIALS, "GET", VECTOR_PATH, VECTOR_QUERY, signed_part)
    headers = {**base, "authorization": value}
    assert verify(SECRETS, "GET", VECTOR_PATH, VECTOR_QUERY, headers) == (
        "host and x-acs-date must be signed"
    )


def test_verify_rejects_a_non_ascii_signature() -> None:
    path, query, headers, body = _signed_request()
    headers["authorization"] = (
        "ACS3-HMAC-SHA256 Credential=AKIDEXAMPLE,SignedHeaders=host;x-acs-date,Signature=é"
    )
    assert verify(SECRETS, "GET", path, query, headers, body) == _MISMATCH


def test_credentials_repr_hides_the_secret() -> None:
    secret = "SUPER-SECRET-VALUE"
    token = "STS-TOKEN-VALUE"
    for creds in (Credentials("AKID", secret), Credentials("AKID", secret, token)):
        for text in (repr(creds), str(creds), f"{creds}", repr([creds]), repr({"c": creds})):
            assert secret not in text
            assert token not in text
            assert "AKID" in text


# --- canonical_query / percent_encode --------------------------------------------------


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({}, ""),
        ({"k": ""}, "k="),
        ({"k": "a b"}, "k=a%20b"),
        ({"k": "a~b"}, "k=a~b"),
        ({"k": "a/b"}, "k=a%2Fb"),
        ({"k": "a+b=c&d*e"}, "k=a%2Bb%3Dc%26d%2Ae"),
        ({"k": "-_.AZaz09"}, "k=-_.AZaz09"),
        ({"k": "é"}, "k=%C3%A9"),
        ({"k": "%20"}, "k=%2520"),
        ({"b": "2", "a": "1", "B": "3", "A": "4", "_": "5"}, "A=4&B=3&_=5&a=1&b=2"),
        (
            {"regionId": "cn-hangzhou", "pageSize": "20", "pageNum": "1"},
            "pageNum=1&pageSize=20&regionId=cn-hangzhou",
        ),
    ],
)
def test_canonical_query_examples(query: dict[str, str], expected: str) -> None:
    """Space is %20, ~ is kept, / is encoded, keys sorted by code point (A-Z, _, a-z)."""
    assert canonical_query(query) == expected
    assert sdk_canonical_query(query) == expected


def test_canonical_query_does_not_encode_keys() -> None:
    """DESIGN §3 and the SDK both leave keys as they are (only values are encoded)."""
    assert canonical_query({"a b": "c d"}) == "a b=c%20d"


@pytest.mark.parametrize(
    ("raw", "encoded"),
    [(" ", "%20"), ("~", "~"), ("/", "%2F"), ("*", "%2A"), ("+", "%2B"), ("中", "%E4%B8%AD")],
)
def test_percent_encode(raw: str, encoded: str) -> None:
    assert percent_encode(raw) == encoded
    assert SdkUtils.get_encode_param(raw) == encoded
