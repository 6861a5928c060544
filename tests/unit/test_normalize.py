"""Unit tests for harvester.normalize: the field mapping and every cleaning rule of DESIGN §4."""

from __future__ import annotations

import copy
import json
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harvester.normalize import MAX_DEPTH, normalize_page, normalize_session
from harvester.records import (
    ComputeId,
    Gateway,
    NormalizedPage,
    SessionId,
    SessionRecord,
    WorkspaceId,
)

GATEWAY = Gateway("cn-hangzhou", WorkspaceId("w-d80f373d3ace824f"), ComputeId("lc-gateway"))

SPARK_CONF = {
    "spark.driver.memory": "4g",
    "spark.executor.instances": "4",
    "proxyUser": "alice",
}


def typical(**changes: Any) -> dict[str, Any]:
    """A record as the API sends it; keyword `name=...` overrides, `name=ABSENT` removes."""
    record: dict[str, Any] = {
        "sessionId": "lsi-0001",
        "name": "notebook-1",
        "computeId": "lc-other",
        "sparkConf": json.dumps(SPARK_CONF),
        "state": "terminated",
        "info": "finished",
        "createTime": 1_714_000_000_000,
        "endTime": 1_714_003_600_000,
        "webUI": "https://spark-ui.example/lsi-0001/",
        "queue": "root_queue",
        "cuHours": 1.25,
        "vcoreSeconds": 7200,
        "mbSeconds": 29_491_200,
        "kind": "sql",
    }
    for key, value in changes.items():
        if value is ABSENT:
            record.pop(key, None)
        else:
            record[key] = value
    return record


ABSENT = object()


def one(raw: object) -> tuple[SessionRecord, list[str]]:
    """Normalize a record that must be kept."""
    record, problems = normalize_session(raw, GATEWAY)
    assert record is not None, problems
    return record, problems


def field_of(raw: dict[str, Any], attribute: str) -> tuple[Any, list[str]]:
    record, problems = one(raw)
    return getattr(record, attribute), problems


# --- mapping --------------------------------------------------------------------------


def test_typical_record_maps_every_field() -> None:
    raw = typical()
    record, problems = one(raw)
    assert problems == []
    assert record == SessionRecord(
        session_id=SessionId("lsi-0001"),
        workspace_id=GATEWAY.workspace_id,
        compute_id=ComputeId("lc-other"),
        region_id="cn-hangzhou",
        name="notebook-1",
        state="terminated",
        spark_conf=SPARK_CONF,
        spark_conf_raw=json.dumps(SPARK_CONF),
        proxy_user="alice",
        queue="root_queue",
        info="finished",
        web_ui="https://spark-ui.example/lsi-0001/",
        create_time_ms=1_714_000_000_000,
        end_time_ms=1_714_003_600_000,
        cu_hours=1.25,
        vcore_seconds=7200,
        mb_seconds=29_491_200,
        raw=raw,
    )


def test_raw_keeps_unknown_fields_and_is_a_copy() -> None:
    raw = typical(newField={"nested": [1, "two", None]})
    record, _ = one(raw)
    assert record.raw == raw
    assert record.raw is not raw


@pytest.mark.parametrize("compute_id", [ABSENT, None, ""])
def test_compute_id_defaults_to_the_gateway(compute_id: object) -> None:
    assert field_of(typical(computeId=compute_id), "compute_id") == ("lc-gateway", [])


def test_minimal_record_has_only_the_id_and_the_target() -> None:
    record, problems = one({"sessionId": "s-1"})
    assert problems == []
    assert (record.session_id, record.workspace_id, record.compute_id, record.region_id) == (
        "s-1",
        "w-d80f373d3ace824f",
        "lc-gateway",
        "cn-hangzhou",
    )
    assert record.name is record.state is record.spark_conf is record.spark_conf_raw is None
    assert record.create_time_ms is record.end_time_ms is record.cu_hours is None
    assert record.raw == {"sessionId": "s-1"}


def test_unknown_state_is_kept_as_given() -> None:
    assert field_of(typical(state="HIBERNATING-ish"), "state") == ("HIBERNATING-ish", [])


def test_long_cjk_and_emoji_text_is_kept_intact() -> None:
    long_text = "数据😀" * 5000 + "x" * 10_000
    record, problems = one(typical(name=long_text, info="任务失败 🔥", queue="队列"))
    assert problems == []
    assert record.name == long_text
    assert (record.info, record.queue) == ("任务失败 🔥", "队列")
    assert record.raw["name"] == long_text


# --- NUL ------------------------------------------------------------------------------


def test_nul_is_removed_from_every_text_and_deep_inside_raw() -> None:
    raw = typical(
        sessionId="lsi-\x000001",
        name="a\x00b",
        state="\x00running",
        sparkConf='{"proxyUser": "bo\x00b"}',
        extra={"k\x00ey": ["v\x00", {"\x00": "\x00\x00"}], "n": 1},
    )
    before = copy.deepcopy(raw)
    record, problems = one(raw)
    assert problems == []
    assert raw == before  # the input is not touched
    assert (record.session_id, record.name, record.state) == ("lsi-0001", "ab", "running")
    assert record.spark_conf == {"proxyUser": "bob"}
    assert record.spark_conf_raw == '{"proxyUser": "bob"}'
    assert record.proxy_user == "bob"
    assert record.raw["extra"] == {"key": ["v", {"": ""}], "n": 1}
    assert record.raw["sessionId"] == "lsi-0001"
    assert "\x00" not in json.dumps(record.raw, ensure_ascii=False)


def test_nul_escaped_inside_spark_conf_json_is_removed_after_parsing() -> None:
    text = '{"proxyUser": "al\\u0000ice", "k\\u0000": ["\\u0000x"]}'
    record, problems = one(typical(sparkConf=text))
    assert problems == []
    assert record.spark_conf == {"proxyUser": "alice", "k": ["x"]}
    assert record.spark_conf_raw == text  # as received: the escape is text, not a NUL
    assert record.proxy_user == "alice"


# --- numbers --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sent", "stored"),
    [(1.25, 1.25), ("1.25", 1.25), (" 42 ", 42.0), ("1e3", 1000.0), (3, 3.0), ("-0.5", -0.5)],
)
def test_cu_hours_accepts_numbers_and_numeric_text(sent: object, stored: float) -> None:
    value, problems = field_of(typical(cuHours=sent), "cu_hours")
    assert (value, problems) == (stored, [])
    assert type(value) is float


@pytest.mark.parametrize(
    ("sent", "stored"),
    [
        (42, 42),
        (12.0, 12),
        ("12", 12),
        (" 42 ", 42),
        ("12.0", 12),
        ("1e3", 1000),
        (-(2**63), -(2**63)),
        (2**63 - 1, 2**63 - 1),
        (str(2**63 - 1), 2**63 - 1),
    ],
)
def test_int_fields_accept_integral_numbers_and_text(sent: object, stored: int) -> None:
    for api_key, attribute in [("vcoreSeconds", "vcore_seconds"), ("mbSeconds", "mb_seconds")]:
        value, problems = field_of(typical(**{api_key: sent}), attribute)
        assert (value, problems) == (stored, [])
        assert type(value) is int


NOT_NUMBERS = [
    True,
    False,
    float("nan"),
    float("inf"),
    float("-inf"),
    "nan",
    "Infinity",
    "abc",
    "",
    "1_000",
    "\uff14\uff12",  # full-width "42": Python reads it, nobody means it
    "0x10",
    {"value": 1},
    [1],
]


@pytest.mark.parametrize("sent", NOT_NUMBERS)
@pytest.mark.parametrize(
    ("api_key", "attribute"),
    [
        ("cuHours", "cu_hours"),
        ("vcoreSeconds", "vcore_seconds"),
        ("mbSeconds", "mb_seconds"),
        ("createTime", "create_time_ms"),
        ("endTime", "end_time_ms"),
    ],
)
def test_a_value_that_is_not_a_number_is_none_and_counted(
    api_key: str, attribute: str, sent: object
) -> None:
    value, problems = field_of(typical(sessionId="s-42", **{api_key: sent}), attribute)
    assert value is None
    assert len(problems) == 1
    assert problems[0].startswith("session 's-42': " + api_key)


@pytest.mark.parametrize("sent", [12.5, "12.5", 2**63, -(2**63) - 1, "9223372036854775808", 1e19])
def test_int_fields_reject_fractions_and_values_outside_64_bits(sent: object) -> None:
    value, problems = field_of(typical(vcoreSeconds=sent), "vcore_seconds")
    assert value is None
    assert len(problems) == 1
    assert "vcoreSeconds" in problems[0]


def test_huge_numbers_for_cu_hours_are_invalid_not_infinite() -> None:
    assert field_of(typical(cuHours=10**400), "cu_hours")[0] is None
    assert field_of(typical(cuHours="1e400"), "cu_hours")[0] is None


# --- times ----------------------------------------------------------------------------

MAX_TIME_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z


@pytest.mark.parametrize(
    ("sent", "stored"),
    [
        (1, 1),
        (MAX_TIME_MS, MAX_TIME_MS),
        ("1714000000000", 1_714_000_000_000),
        (1.7e12, 17 * 10**11),
    ],
)
def test_times_within_1970_to_9999_are_kept(sent: object, stored: int) -> None:
    for api_key, attribute in [("createTime", "create_time_ms"), ("endTime", "end_time_ms")]:
        value, problems = field_of(typical(**{api_key: sent}), attribute)
        assert (value, problems) == (stored, [])
        assert type(value) is int


@pytest.mark.parametrize("sent", [-1, MAX_TIME_MS + 1, 2**63 - 1, "-5"])
def test_times_outside_1970_to_9999_are_invalid(sent: object) -> None:
    for api_key, attribute in [("createTime", "create_time_ms"), ("endTime", "end_time_ms")]:
        value, problems = field_of(typical(**{api_key: sent}), attribute)
        assert value is None
        assert len(problems) == 1
        assert api_key in problems[0]


@pytest.mark.parametrize("sent", [ABSENT, None, 0, "0", 0.0])
def test_end_time_absent_or_zero_means_not_ended(sent: object) -> None:
    assert field_of(typical(endTime=sent), "end_time_ms") == (None, [])


@pytest.mark.parametrize("sent", [ABSENT, None])
def test_create_time_absent_is_none_and_not_counted(sent: object) -> None:
    assert field_of(typical(createTime=sent), "create_time_ms") == (None, [])


def test_create_time_zero_is_none_and_counted() -> None:
    value, problems = field_of(typical(createTime=0), "create_time_ms")
    assert value is None
    assert len(problems) == 1
    assert "createTime" in problems[0]


# --- text -----------------------------------------------------------------------------


@pytest.mark.parametrize("sent", [ABSENT, None, "null"])
def test_info_absent_or_null_is_none_and_not_counted(sent: object) -> None:
    assert field_of(typical(info=sent), "info") == (None, [])


@pytest.mark.parametrize("sent", ["NULL", "Null", "", "null pointer"])
def test_info_other_texts_are_kept(sent: str) -> None:
    assert field_of(typical(info=sent), "info") == (sent, [])


@pytest.mark.parametrize(("sent", "stored"), [(123, "123"), (1.5, "1.5"), (-7, "-7")])
def test_text_given_as_a_number_becomes_its_text(sent: object, stored: str) -> None:
    for api_key, attribute in [("name", "name"), ("state", "state"), ("queue", "queue")]:
        assert field_of(typical(**{api_key: sent}), attribute) == (stored, [])


@pytest.mark.parametrize("sent", [{"a": 1}, ["x"], True, float("nan")])
def test_text_given_as_an_object_list_or_bool_is_none_and_counted(sent: object) -> None:
    for api_key, attribute in [
        ("name", "name"),
        ("state", "state"),
        ("queue", "queue"),
        ("webUI", "web_ui"),
        ("info", "info"),
    ]:
        value, problems = field_of(typical(sessionId="s-7", **{api_key: sent}), attribute)
        assert value is None
        assert len(problems) == 1
        assert problems[0].startswith(f"session 's-7': {api_key} ")


def test_compute_id_of_the_wrong_type_is_counted_and_falls_back_to_the_gateway() -> None:
    value, problems = field_of(typical(computeId={"id": "x"}), "compute_id")
    assert value == "lc-gateway"
    assert len(problems) == 1


# --- sparkConf ------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["[1, 2]", "42", '"text"', "true", "{bad", '{"a": NaN}', "{"])
def test_spark_conf_text_that_is_not_a_json_object_is_counted_and_kept_as_text(text: str) -> None:
    record, problems = one(typical(sparkConf=text))
    assert (record.spark_conf, record.spark_conf_raw, record.proxy_user) == (None, text, None)
    assert len(problems) == 1
    assert "sparkConf" in problems[0]


@pytest.mark.parametrize("text", ["", "  ", "null"])
def test_empty_spark_conf_text_is_no_conf_and_not_counted(text: str) -> None:
    record, problems = one(typical(sparkConf=text))
    assert (record.spark_conf, record.spark_conf_raw, problems) == (None, text, [])


@pytest.mark.parametrize("sent", [ABSENT, None])
def test_absent_spark_conf_is_none_twice(sent: object) -> None:
    record, problems = one(typical(sparkConf=sent))
    assert (record.spark_conf, record.spark_conf_raw, record.proxy_user, problems) == (
        None,
        None,
        None,
        [],
    )


def test_spark_conf_sent_as_an_object_is_used_with_its_compact_json() -> None:
    conf = {"proxyUser": "carol", "n": 1, "中": [1.5, None]}
    record, problems = one(typical(sparkConf=conf))
    assert problems == []
    assert record.spark_conf == conf
    assert record.spark_conf_raw == '{"proxyUser":"carol","n":1,"中":[1.5,null]}'
    assert record.proxy_user == "carol"


@pytest.mark.parametrize("sent", [[1, "a"], 42, True])
def test_spark_conf_sent_as_another_value_is_counted_and_kept_as_json_text(sent: object) -> None:
    record, problems = one(typical(sparkConf=sent))
    assert (record.spark_conf, record.spark_conf_raw) == (
        None,
        json.dumps(sent, separators=(",", ":")),
    )
    assert len(problems) == 1


@pytest.mark.parametrize("proxy_user", [42, None, ["alice"], {"name": "alice"}])
def test_proxy_user_is_taken_only_when_it_is_text(proxy_user: object) -> None:
    record, problems = one(typical(sparkConf=json.dumps({"proxyUser": proxy_user})))
    assert (record.proxy_user, problems) == (None, [])


def test_non_finite_floats_inside_raw_become_null_so_raw_is_strict_json() -> None:
    raw = typical(cuHours=float("nan"), extra=[float("inf"), {"x": float("-inf")}, 1.5])
    record, problems = one(raw)
    assert record.cu_hours is None
    assert len(problems) == 1  # cuHours; `extra` is nobody's column
    assert record.raw["cuHours"] is None
    assert record.raw["extra"] == [None, {"x": None}, 1.5]
    json.dumps(record.raw, allow_nan=False)


def test_values_no_json_parser_makes_still_give_json_raw() -> None:
    raw = typical(extra=(1, "a\x00"), other={1: "x", None: {2.5}}, obj=object())
    record, _ = one(raw)
    assert record.raw["extra"] == [1, "a"]
    assert record.raw["obj"] is None
    json.dumps(record.raw, allow_nan=False)


def test_integers_too_long_for_text_are_handled() -> None:
    huge = 10**5000  # more digits than Python turns into text by default
    record, problems = one(typical(name=huge, sparkConf={"n": huge}))
    assert (record.name, record.spark_conf, record.spark_conf_raw) == (
        None,
        {"n": None},  # no float holds it either
        '{"n":null}',
    )
    assert len(problems) == 1  # name; the conf object itself is fine
    record, problems = normalize_session(typical(sessionId=huge), GATEWAY)
    assert record is None


def test_nested_spark_conf_with_braces_in_text_is_parsed_intact() -> None:
    conf = {"a": {"b": [1, "${x}", '{[\\"]}']}, "proxyUser": "dave", "emoji": "😀"}
    record, problems = one(typical(sparkConf=json.dumps(conf)))
    assert (record.spark_conf, record.proxy_user, problems) == (conf, "dave", [])


@pytest.mark.parametrize("inner", ['"\\u0000"', "1"])
def test_spark_conf_nested_deeper_than_max_depth_is_invalid(inner: str) -> None:
    levels = MAX_DEPTH - 1  # below the conf object itself
    fits = '{"a":' + "[" * levels + inner + "]" * levels + "}"
    record, problems = one(typical(sparkConf=fits))
    assert (record.spark_conf is not None, problems) == (True, [])
    too_deep = '{"a":' + "[" * (levels + 1) + inner + "]" * (levels + 1) + "}"
    record, problems = one(typical(sparkConf=too_deep))
    assert (record.spark_conf, record.spark_conf_raw) == (None, too_deep)
    assert len(problems) == 1
    assert "sparkConf" in problems[0]


def test_integers_beyond_64_bits_in_raw_become_floats_as_orjson_reads_them() -> None:
    raw = typical(name=2**70, extra=[2**64, 2**64 - 1, -(2**63), -(2**63) - 1, 10**400])
    record, problems = one(raw)
    assert record.name == str(2**70)  # the field keeps every digit
    assert record.raw["name"] == float(2**70)
    assert record.raw["extra"] == [float(2**64), 2**64 - 1, -(2**63), float(-(2**63) - 1), None]
    assert problems == []
    orjson.dumps([record])


# --- skipped records ------------------------------------------------------------------


@pytest.mark.parametrize("raw", [None, 42, "lsi-1", ["sessionId", "x"], ("a", "b")])
def test_a_record_that_is_not_an_object_is_skipped(raw: object) -> None:
    record, problems = normalize_session(raw, GATEWAY)
    assert record is None
    assert len(problems) == 1
    assert problems[0].startswith("skipped")


@pytest.mark.parametrize("session_id", [ABSENT, None, "", "   ", "\x00", True, 1.5, {"id": 1}, []])
def test_a_record_without_a_usable_session_id_is_skipped(session_id: object) -> None:
    record, problems = normalize_session(typical(sessionId=session_id), GATEWAY)
    assert record is None
    assert len(problems) == 1
    assert "sessionId" in problems[0]


def test_an_integer_session_id_becomes_text() -> None:
    assert field_of(typical(sessionId=123), "session_id") == ("123", [])


def nested(levels: int) -> list[Any]:
    """`levels` lists, each holding the next; the innermost holds a NUL to clean."""
    value: list[Any] = ["\x00"]
    for _ in range(levels - 1):
        value = [value]
    return value


@pytest.mark.parametrize("dirty", [False, True])
def test_raw_nested_up_to_max_depth_is_kept_and_deeper_is_skipped(dirty: bool) -> None:
    # the record is level 1, so its fields can hold MAX_DEPTH - 1 levels
    fits, too_deep = nested(MAX_DEPTH - 1), nested(MAX_DEPTH)
    if not dirty:
        fits, too_deep = json.loads(json.dumps(fits).replace("\\u0000", "")), too_deep[:]
    record, _ = one(typical(extra=fits))
    orjson.dumps([record])  # what the store does with a page
    record, problems = normalize_session(typical(extra=too_deep), GATEWAY)
    assert record is None
    assert problems == [f"skipped: nested more than {MAX_DEPTH} levels deep"]


def test_absurdly_deep_nesting_skips_the_record_instead_of_crashing() -> None:
    record, problems = normalize_session(typical(extra=nested(5000)), GATEWAY)
    assert record is None
    assert len(problems) == 1


# --- pages ----------------------------------------------------------------------------


def test_page_counts_skipped_duplicates_and_invalid_values() -> None:
    raw_sessions = [
        typical(sessionId="a", name="first"),
        "not a record",
        typical(sessionId="b", cuHours="lots", vcoreSeconds=True),
        typical(sessionId="a", name="second"),
        typical(sessionId=ABSENT),
        typical(sessionId="c"),
    ]
    page = normalize_page(raw_sessions, GATEWAY)
    assert [record.session_id for record in page.records] == ["a", "b", "c"]
    assert page.records[0].name == "first"
    assert (page.skipped, page.duplicates, page.invalid_values) == (2, 1, 2)
    assert len(page.problems) == 5
    assert page.problems[0].startswith("record 1: skipped")
    assert any("'b': cuHours" in problem for problem in page.problems)
    assert any("'b': vcoreSeconds" in problem for problem in page.problems)
    assert any("'a': listed twice" in problem for problem in page.problems)
    assert page.problems[-1].startswith("record 4: skipped")


def test_invalid_values_of_a_dropped_duplicate_are_not_counted() -> None:
    page = normalize_page([typical(sessionId="a"), typical(sessionId="a", cuHours="x")], GATEWAY)
    assert (len(page.records), page.duplicates, page.invalid_values) == (1, 1, 0)


def test_empty_page() -> None:
    assert normalize_page([], GATEWAY) == NormalizedPage([])


def test_session_ids_that_differ_only_by_nul_are_duplicates() -> None:
    page = normalize_page([typical(sessionId="a\x00b"), typical(sessionId="ab")], GATEWAY)
    assert ([r.session_id for r in page.records], page.duplicates) == (["ab"], 1)


# --- properties on hostile input ------------------------------------------------------

hostile_text = st.text(
    st.sampled_from(["\x00", "a", "1", ".", "e", "-", " ", "😀", "中", "{", '"', "\\"])
    # Lone surrogates excluded: the client's JSON parser (orjson) never yields them.
    | st.characters(codec="utf-8"),
    max_size=12,
)
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(-(2**70), 2**70)
    | st.floats()
    | hostile_text
)
json_like = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(hostile_text, children, max_size=4)
    ),
    max_leaves=12,
)
numeric_text = (st.integers() | st.floats()).map(lambda number: f" {number} ")
anything = json_like | numeric_text | json_like.map(json.dumps)

# Plausible values, so that most records are kept and their fields go through every path;
# `anything` mixed in everywhere keeps them hostile.
conf_objects = st.builds(
    lambda known, other: {**other, **known},
    st.fixed_dictionaries({}, optional={"proxyUser": hostile_text | json_like}),
    st.dictionaries(hostile_text, json_like, max_size=4),
)
conf_values = (
    conf_objects.map(json.dumps)  # NUL as \u0000 escapes
    | conf_objects.map(lambda conf: json.dumps(conf, ensure_ascii=False))  # NUL as is
    | conf_objects
    | st.sampled_from(["", "null", "{", "[]", '{"a": NaN}'])
    | anything
)
odd_numbers = st.sampled_from([float("nan"), float("inf"), -float("inf"), True, 10**400, "1e400"])
times = (
    st.integers(-10, MAX_TIME_MS + 10)
    | st.sampled_from([0, 1, MAX_TIME_MS, "0", 1.7e12])
    | odd_numbers
    | anything
)
numbers = (
    st.integers(-(2**64), 2**64)
    | st.floats()
    | numeric_text
    | st.sampled_from([2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 12.0, "1e3", "1.25"])
    | odd_numbers
    | anything
)
texts = (
    hostile_text
    | st.sampled_from(["null", "running", ""])
    | st.integers()
    | st.floats()
    | st.booleans()
    | anything
)
session_ids = (
    st.sampled_from(["s-1", "s-2", "s-\x001", "s-3", "", "\x00", " "])
    | st.integers(0, 3)
    | hostile_text
    | json_like
)
FIELD_VALUES = {
    "sparkConf": conf_values,
    "createTime": times,
    "endTime": times,
    "cuHours": numbers,
    "vcoreSeconds": numbers,
    "mbSeconds": numbers,
    **dict.fromkeys(["name", "computeId", "state", "info", "webUI", "queue"], texts),
}
hostile_records = st.builds(
    lambda known, extra: {**extra, **known},
    st.fixed_dictionaries({"sessionId": session_ids}, optional=FIELD_VALUES),
    st.dictionaries(hostile_text, json_like, max_size=3),
)
hostile_pages = st.lists(
    hostile_records | hostile_records | hostile_records | json_like, max_size=6
)

TEXT_ATTRIBUTES = [
    "session_id",
    "workspace_id",
    "compute_id",
    "region_id",
    "name",
    "state",
    "spark_conf_raw",
    "proxy_user",
    "queue",
    "info",
    "web_ui",
]


def assert_nul_free(value: object) -> None:
    if isinstance(value, str):
        assert "\x00" not in value
    elif isinstance(value, dict):
        for key, item in value.items():
            assert isinstance(key, str)
            assert "\x00" not in key
            assert_nul_free(item)
    elif isinstance(value, list):
        for item in value:
            assert_nul_free(item)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hostile_pages)
def test_hostile_pages_are_cleaned_never_crash(raw_sessions: list[object]) -> None:
    before = copy.deepcopy(raw_sessions)
    page = normalize_page(raw_sessions, GATEWAY)

    assert raw_sessions == before  # never mutated
    assert len(page.records) + page.skipped + page.duplicates == len(raw_sessions)
    ids = [record.session_id for record in page.records]
    assert len(ids) == len(set(ids))
    assert page.invalid_values + page.skipped + page.duplicates <= len(page.problems)
    for record in page.records:
        for attribute in TEXT_ATTRIBUTES:
            value = getattr(record, attribute)
            assert value is None or type(value) is str
            assert_nul_free(value)
        assert record.session_id.strip()
        assert record.compute_id
        assert_nul_free(record.raw)
        assert_nul_free(record.spark_conf)
        assert isinstance(record.raw, dict)
        assert record.spark_conf is None or isinstance(record.spark_conf, dict)
        json.dumps(record.raw, allow_nan=False)
        json.dumps(record.spark_conf, allow_nan=False)
        assert record.cu_hours is None or type(record.cu_hours) is float
        for attribute in ["vcore_seconds", "mb_seconds", "create_time_ms", "end_time_ms"]:
            number = getattr(record, attribute)
            assert number is None or (type(number) is int and -(2**63) <= number < 2**63)
        for number in [record.create_time_ms, record.end_time_ms]:
            assert number is None or 0 < number <= MAX_TIME_MS
        assert record.info != "null"

    orjson.dumps(page.records)  # what the store does with a page
    assert normalize_page(raw_sessions, GATEWAY) == page  # deterministic


@settings(max_examples=200, deadline=None)
@given(json_like)
def test_any_json_value_as_the_whole_record_never_crashes(raw: object) -> None:
    record, problems = normalize_session(raw, GATEWAY)
    if record is None:
        assert len(problems) == 1
    else:
        assert_nul_free(record.raw)
        json.dumps(record.raw, allow_nan=False)
        orjson.dumps(record)
