"""Property tests: normalization never raises, never drops a record silently, and what
it returns is always storable (orjson serializes it, no NUL, no lone surrogate)."""

from __future__ import annotations

import re
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harvester.normalize import normalize_page, normalize_session
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
