"""Hostile answers to ListLivyComputeSessions: decoding is pure, so no network is needed.

Whatever the body, decoding returns a shape-checked page or raises an ApiError that says
what was wrong (ApiUnavailable: retried; ApiRejected/ApiInvalidResponse: final). Never
another exception, never a hang, never a page that silently lost records.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harvester.api.client import (
    MAX_TOTAL_COUNT,
    decode_body,
    decode_gateways,
    decode_sessions_page,
    parse_json,
)
from harvester.errors import ApiError, ApiInvalidResponse, ApiRejected, ApiUnavailable
from harvester.normalize import normalize_page
from harvester.records import ComputeId, Gateway, WorkspaceId

TARGET = "gateway w-1/lc-1 (cn-hangzhou)"
GATEWAY = Gateway("cn-hangzhou", WorkspaceId("w-1"), ComputeId("lc-1"))
PAGE_SIZE = 20
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5)
    ),
    max_leaves=30,
)


def decode(body: bytes) -> Any:
    return decode_sessions_page(body, {}, page_size=PAGE_SIZE, target=TARGET)


def check_outcome(body: bytes) -> None:
    """The contract every body must meet."""
    try:
        page = decode(body)
    except ApiError as exc:
        message = exc.message
    else:
        message = None
    if message is not None:
        assert message.startswith(TARGET)
        assert len(message) < 1200  # a message, not the body echoed back
        return
    assert isinstance(page.sessions, list)
    assert len(page.sessions) <= PAGE_SIZE
    assert 0 <= page.total_count <= MAX_TOTAL_COUNT


@FAST
@given(st.binary(max_size=300))
def test_any_bytes_decode_or_raise_an_api_error(body: bytes) -> None:
    check_outcome(body)


@FAST
@given(json_values)
def test_any_json_value_decodes_or_raises_an_api_error(value: Any) -> None:
    check_outcome(json.dumps(value).encode())


@FAST
@given(
    sessions=json_values | st.lists(json_values, max_size=PAGE_SIZE + 5),
    total=json_values,
    extra=st.dictionaries(st.sampled_from(["Code", "Message", "requestId", "x"]), json_scalars),
)
def test_any_page_shaped_object_decodes_or_raises(sessions: Any, total: Any, extra: Any) -> None:
    body = json.dumps({"sessions": sessions, "totalCount": total, **extra}).encode()
    check_outcome(body)


@FAST
@given(st.lists(json_values, max_size=PAGE_SIZE))
def test_a_decoded_page_loses_no_record_silently(records: list[Any]) -> None:
    """Every record is either normalized, a counted duplicate, or a counted, explained skip."""
    page = decode(json.dumps({"totalCount": len(records), "sessions": records}).encode())
    assert len(page.sessions) == len(records)  # orjson reads >64-bit ints as floats
    normalized = normalize_page(page.sessions, GATEWAY)
    assert len(normalized.records) + normalized.skipped + normalized.duplicates == len(records)
    assert len(normalized.problems) >= normalized.skipped + normalized.duplicates


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"", ApiUnavailable),
        (b"<html><body>502 Bad Gateway</body></html>", ApiUnavailable),
        (b'{"totalCount": 3, "sessions": [{"sessionId": "a"}', ApiUnavailable),  # truncated
        (b"\xff\xfe\x00garbage", ApiUnavailable),
        (b"[1, 2, 3]", ApiInvalidResponse),
        (b'"just text"', ApiInvalidResponse),
        (b"null", ApiInvalidResponse),
        (b'{"totalCount": 1, "sessions": {"sessionId": "a"}}', ApiInvalidResponse),
        (b'{"totalCount": 1, "sessions": "a"}', ApiInvalidResponse),
        (b'{"sessions": []}', ApiInvalidResponse),  # no totalCount at all
        (b'{"totalCount": -1, "sessions": []}', ApiInvalidResponse),
        (b'{"totalCount": 1e30, "sessions": []}', ApiInvalidResponse),
        (b'{"totalCount": 100000000000000000000000000, "sessions": []}', ApiInvalidResponse),
        (b'{"totalCount": "many", "sessions": []}', ApiInvalidResponse),
        (b'{"totalCount": "-3", "sessions": []}', ApiInvalidResponse),
        (b'{"totalCount": 2.5, "sessions": []}', ApiInvalidResponse),
        (b'{"totalCount": true, "sessions": []}', ApiInvalidResponse),
        (b'{"totalCount": NaN, "sessions": []}', ApiInvalidResponse),
        (b'{"totalCount": null, "sessions": []}', ApiInvalidResponse),
        (b'{"totalCount": [5], "sessions": []}', ApiInvalidResponse),
        (
            b'{"Code": "ServiceUnavailable", "Message": "try later", "RequestId": "R1"}',
            ApiUnavailable,
        ),
        (b'{"Code": "Throttling.User", "Message": "slow down"}', ApiUnavailable),
        (b'{"Code": "Forbidden.RAM", "Message": "not allowed"}', ApiRejected),
        (b'{"Code": 42, "Message": {"nested": true}}', ApiRejected),
    ],
)
def test_hostile_bodies_give_a_clear_error(body: bytes, error: type[ApiError]) -> None:
    with pytest.raises(error) as raised:
        decode(body)
    assert type(raised.value) is error
    assert raised.value.message.startswith(TARGET)


def test_a_page_longer_than_page_size_is_refused_not_cut() -> None:
    body = {"totalCount": 50, "sessions": [{"sessionId": f"s{i}"} for i in range(PAGE_SIZE + 1)]}
    with pytest.raises(ApiInvalidResponse, match="21 sessions, more than the pageSize 20"):
        decode(orjson.dumps(body))


def test_an_error_code_inside_a_200_names_code_message_and_request_id() -> None:
    with pytest.raises(ApiRejected) as raised:
        decode(b'{"Code": "Forbidden.RAM", "Message": "no list permission", "RequestId": "R9"}')
    assert raised.value.code == "Forbidden.RAM"
    assert "no list permission" in raised.value.message
    assert "R9" in raised.value.message


@pytest.mark.parametrize(
    ("total", "expected"), [(0, 0), (600, 600), ("600", 600), (" 7 ", 7), (600.0, 600)]
)
def test_total_count_in_the_forms_a_service_sends(total: object, expected: int) -> None:
    page = decode(orjson.dumps({"totalCount": total, "sessions": []}))
    assert page.total_count == expected


def test_a_lone_surrogate_escape_does_not_cost_the_page() -> None:
    """orjson refuses `\\ud800`; the stdlib fallback reads it and normalization cleans it."""
    body = (
        b'{"requestId":"R","totalCount":2,"sessions":['
        b'{"sessionId":"s1","name":"bad \\ud800 name","state":"running"},'
        b'{"sessionId":"s2","name":"pair \\ud83d\\ude80 ok","state":"running"}]}'
    )
    page = decode(body)
    assert [s["sessionId"] for s in page.sessions] == ["s1", "s2"]
    normalized = normalize_page(page.sessions, GATEWAY)
    assert [r.name for r in normalized.records] == ["bad \ufffd name", "pair \U0001f680 ok"]
    assert normalized.records[0].raw["name"] == "bad \ufffd name"
    orjson.dumps(normalized.records)  # what the store serializes: must not raise


def test_parse_json_refuses_what_is_not_json_with_value_error() -> None:
    for body in (b"", b"{", b"[" * 5000, b"\xc3\x28", b"NaN-ish"):
        with pytest.raises(ValueError, match="not valid JSON"):
            parse_json(body)


def test_decode_body_and_gateways() -> None:
    assert decode_body(b'{"a": 1}', {}, target="t") == {"a": 1}
    ok = b'{"code": "1000000", "data": {"livyComputes": [{"computeId": "lc-1"}, 3, "x"]}}'
    assert decode_gateways(ok, {}, target="t") == [{"computeId": "lc-1"}]
    assert decode_gateways(b'{"code": "1000000", "data": null}', {}, target="t") == []
    with pytest.raises(ApiUnavailable, match="1000500"):
        decode_gateways(b'{"code": "1000500", "message": "Internal error"}', {}, target="t")
    with pytest.raises(ApiRejected, match="1000403"):
        decode_gateways(b'{"code": "1000403", "message": "denied"}', {}, target="t")
    with pytest.raises(ApiInvalidResponse):
        decode_gateways(b'{"code": "1000000", "data": {"livyComputes": 5}}', {}, target="t")
