"""Property tests: normalization never raises, never drops a record silently, and what
it returns is always storable (orjson serializes it, no NUL, no lone surrogate)."""

from __future__ import annotations

import json
import re
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harvester.normalize import (
    _normalize,
    _normalize_documented,
    normalize_page,
    normalize_session,
)
from harvester.records import ComputeId, Gateway, SessionRecord, WorkspaceId

GATEWAY = Gateway("cn-hangzhou", WorkspaceId("w-1"), ComputeId("lc-1"))
FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
FIELDS = (
    "sessionId", "name", "computeId", "sparkConf", "state", "info", "createTime", "endTime",
    "webUI", "queue", "cuHours", "vcoreSeconds", "mbSeconds",
)  # fmt: skip

# Text including NUL and lone surrogates: what a stdlib json.loads can hand over.
hostile_text = st.text(
    alphabet=st.characters(codec=None, exclude_categories=()), max_size=20
) | st.sampled_from(["\x00", "\ud800", "a\udfffb", "null", "", " ", "12", "1e3", "NaN", "-1"])
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats()
    | hostile_text
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(hostile_text, inner, max_size=4),
    max_leaves=20,
)
session_like = st.fixed_dictionaries(
    {}, optional=dict.fromkeys(FIELDS, values) | {"sessionId": hostile_text | st.integers()}
)


def assert_storable(record: SessionRecord) -> None:
    orjson.dumps(record)  # the store's page document: raises on surrogates, NaN, big ints
    for name in ("session_id", "name", "state", "queue", "info", "web_ui", "spark_conf_raw"):
        value = getattr(record, name)
        assert value is None or not UNSTORABLE.search(value), (name, value)
    assert not UNSTORABLE.search(orjson.dumps(record.raw).decode())


@FAST
@given(st.lists(values | session_like, max_size=8))
def test_normalize_page_accounts_for_every_record(raw: list[Any]) -> None:
    page = normalize_page(raw, GATEWAY)
    assert len(page.records) + page.skipped + page.duplicates == len(raw)
    assert len(page.problems) >= page.skipped + page.duplicates
    assert page.invalid_values >= 0
    for record in page.records:
        assert_storable(record)
    orjson.dumps(page.records)


@FAST
@given(session_like)
def test_a_session_with_any_field_values_is_stored_or_skipped_with_a_reason(raw: Any) -> None:
    record, problems = normalize_session(raw, GATEWAY)
    assert all(isinstance(problem, str) and len(problem) < 400 for problem in problems)
    if record is None:
        assert len(problems) == 1
        assert problems[0].startswith("skipped:")
        return
    assert_storable(record)
    assert record.session_id.strip()


@FAST
@given(hostile_text, hostile_text)
def test_text_is_cleaned_not_dropped(name: str, key: str) -> None:
    record, _ = normalize_session({"sessionId": "s-1", "name": name, key: name}, GATEWAY)
    assert record is not None
    assert_storable(record)
    expected = re.sub("[\ud800-\udfff]", "\ufffd", name.replace("\x00", ""))
    assert record.name == expected


# The straight path for records with the documented types must agree with the general one:
# mostly valid values, so that it is taken, with the edges where it must step aside.
clean_text = st.text(st.characters(exclude_characters="\x00"), max_size=12)
odd_text = st.sampled_from(["", " ", "null", "数据", "a\x00b", "\ud800"])
plain_text = clean_text | clean_text | odd_text
valid_ints = st.integers(min_value=0, max_value=253_402_300_799_999)
edge_ints = (
    valid_ints
    | valid_ints
    | st.sampled_from([0, -1, 253_402_300_800_000, 2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 2**64])
)
spark_confs = st.sampled_from(
    ['{"proxyUser": "al"}', '{"a": {"b": [1]}}', "{", "[]", "null", "", '{"k": "\\u0000"}']
) | st.dictionaries(plain_text, scalars).map(lambda conf: json.dumps(conf, ensure_ascii=False))
documented_like = st.fixed_dictionaries(
    {"sessionId": clean_text.filter(str.strip) | plain_text},
    optional={
        **dict.fromkeys(("computeId", "name", "state", "queue", "info", "webUI"), plain_text),
        "sparkConf": spark_confs,
        **dict.fromkeys(("createTime", "endTime", "vcoreSeconds", "mbSeconds"), edge_ints),
        "cuHours": st.floats(allow_nan=False, allow_infinity=False) | st.floats() | edge_ints,
        "kind": plain_text | values,
    },
)


@settings(FAST, max_examples=500)
@given(documented_like)
def test_the_straight_path_agrees_with_the_general_one(raw: Any) -> None:
    straight = _normalize_documented(raw, GATEWAY) if type(raw) is dict else None
    if straight is not None:
        assert straight == _normalize(raw, GATEWAY)


def test_a_typical_record_takes_the_straight_path() -> None:
    raw = {
        "sessionId": "s-1", "computeId": "lc-1", "name": "n", "state": "running",
        "queue": "q", "info": "", "webUI": "https://ui", "sparkConf": '{"proxyUser": "bo"}',
        "createTime": 1_714_000_000_000, "endTime": 0, "cuHours": 0.5,
        "vcoreSeconds": 10, "mbSeconds": 20, "kind": {"extra": [1, "two", None]},
    }  # fmt: skip
    assert _normalize_documented(raw, GATEWAY) == _normalize(raw, GATEWAY)
    assert _normalize_documented(raw, GATEWAY) is not None
