"""Raw ListLivyComputeSessions records -> SessionRecord, with the cleaning rules (pure).

DESIGN §4: NUL characters are removed from all text, `raw` included (PostgreSQL rejects
them); numbers sent as text are parsed; a value that cannot be parsed becomes None and is
counted; a record without a usable sessionId is skipped and counted. Nothing here raises
on bad data: one odd record must never stop a harvest.

This runs for every record of every page, so a clean record with the documented types
takes a straight path: one scan proves it clean, then each field is taken as is. The deep
copy and the coercions only run for the records and values that need them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from math import isfinite
from typing import Any, Final

import orjson

from harvester.records import ComputeId, Gateway, NormalizedPage, SessionId, SessionRecord

_NUL: Final = "\x00"
#: How `\x00` looks inside JSON text; its presence means a parsed value may hold a NUL.
_JSON_NUL: Final = "\\u0000"
_INT64_MIN: Final = -(2**63)
_INT64_MAX: Final = 2**63 - 1
#: 9999-12-31T23:59:59.999Z: timestamptz and Python's datetime both end in year 9999.
_MAX_TIME_MS: Final = 253_402_300_799_999
#: Enough of a value to recognise it in a log line, without flooding it.
_PREVIEW_CHARS: Final = 40


def normalize_page(raw_sessions: Sequence[object], gateway: Gateway) -> NormalizedPage:
    """Clean one page; a sessionId listed twice keeps its first record."""
    records: list[SessionRecord] = []
    page = NormalizedPage(records)
    seen: set[str] = set()
    for index, raw in enumerate(raw_sessions):
        record, problems = normalize_session(raw, gateway)
        if record is None:
            page.skipped += 1
            page.problems.extend(f"record {index}: {problem}" for problem in problems)
        elif record.session_id in seen:
            # The service may shift its list between page requests; the first copy is as
            # good as the second, and keeping one keeps the upsert free of conflicts.
            page.duplicates += 1
            page.problems.append(
                f"session {_preview(record.session_id)}: listed twice in one page, kept the first"
            )
        else:
            seen.add(record.session_id)
            records.append(record)
            if problems:
                page.invalid_values += len(problems)
                page.problems.extend(problems)
    return page


def normalize_session(raw: object, gateway: Gateway) -> tuple[SessionRecord | None, list[str]]:
    """Clean one raw session record.

    Returns (None, [why]) when the record cannot be stored at all (skipped); otherwise the
    record and one problem text per field value that was invalid and stored as None.
    """
    try:
        return _normalize(raw, gateway)
    except RecursionError:
        # Only reachable with JSON nested about a thousand levels deep: not a session.
        return None, ["skipped: nested too deeply to clean"]


def _normalize(raw: object, gateway: Gateway) -> tuple[SessionRecord | None, list[str]]:
    if not isinstance(raw, dict):
        return None, [f"skipped: not an object but {_preview(raw)}"]
    source: dict[str, Any]  # fields are read from here: NUL-free, non-finite floats kept
    stored: dict[str, Any]  # what goes to the `raw` column: NUL-free, non-finite -> None
    if type(raw) is dict and _is_clean_dict(raw):
        source = raw
        stored = dict(raw)  # a copy, so the record never shares its top level with the caller
    else:
        source = _clean(raw, keep_nonfinite=True)
        stored = _clean(source, keep_nonfinite=False)
    get = source.get

    session_id = _session_id(get("sessionId"))
    if session_id is None:
        return None, [f"skipped: no usable sessionId (got {_preview(get('sessionId'))})"]

    problems: list[str] = []
    spark_conf, spark_conf_raw = _spark_conf(get("sparkConf"), stored.get("sparkConf"), problems)
    proxy_user = spark_conf.get("proxyUser") if spark_conf is not None else None
    info = _text_field(get("info"), "info", problems)
    compute_id = _text_field(get("computeId"), "computeId", problems)
    record = SessionRecord(
        session_id=SessionId(session_id),
        workspace_id=gateway.workspace_id,
        compute_id=ComputeId(compute_id) if compute_id else gateway.compute_id,
        region_id=gateway.region_id,
        name=_text_field(get("name"), "name", problems),
        state=_text_field(get("state"), "state", problems),
        spark_conf=spark_conf,
        spark_conf_raw=spark_conf_raw,
        proxy_user=proxy_user if type(proxy_user) is str else None,
        queue=_text_field(get("queue"), "queue", problems),
        info=None if info == "null" else info,
        web_ui=_text_field(get("webUI"), "webUI", problems),
        create_time_ms=_time_field(get("createTime"), "createTime", problems, zero_is_absent=False),
        end_time_ms=_time_field(get("endTime"), "endTime", problems, zero_is_absent=True),
        cu_hours=_float_field(get("cuHours"), "cuHours", problems),
        vcore_seconds=_int_field(get("vcoreSeconds"), "vcoreSeconds", problems),
        mb_seconds=_int_field(get("mbSeconds"), "mbSeconds", problems),
        raw=stored,
    )
    if problems:
        prefix = f"session {_preview(session_id)}: "
        problems = [prefix + problem for problem in problems]
    return record, problems


# --- cleaning whole values ------------------------------------------------------------


def _is_clean_dict(obj: dict[Any, Any]) -> bool:
    """True when `obj` can be stored as is: JSON types only, text keys, no NUL, finite floats.

    Exact type checks on purpose: this is the per-record hot path, and anything unusual
    (a subclass, a tuple) simply takes the slow path through `_clean`.
    """
    try:
        if _NUL in "".join(obj):  # all keys at once: one call instead of one per key
            return False
    except TypeError:  # a key that is not text
        return False
    return _is_clean_list(obj.values())


def _is_clean_list(items: Iterable[Any]) -> bool:
    """True when every item can be stored as is (see `_is_clean_dict`)."""
    for value in items:
        kind = type(value)
        if kind is str:
            if _NUL in value:
                return False
        elif value is None or kind is int or kind is bool:
            continue
        elif kind is float:
            if not isfinite(value):
                return False
        elif kind is dict:
            if not _is_clean_dict(value):
                return False
        elif kind is list:
            if not _is_clean_list(value):
                return False
        else:
            return False
    return True


def _clean(value: Any, *, keep_nonfinite: bool) -> Any:
    """A NUL-free copy of `value` made of plain JSON types only; never mutates `value`.

    Non-finite floats become None unless kept (jsonb and strict JSON have no NaN); values
    that JSON cannot hold at all (impossible from a JSON parser) become None as well.
    """
    if isinstance(value, str):
        return str(value).replace(_NUL, "")
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value) if keep_nonfinite or isfinite(value) else None
    if isinstance(value, dict):
        return {
            (str(key).replace(_NUL, "") if isinstance(key, str) else _preview(key)): _clean(
                item, keep_nonfinite=keep_nonfinite
            )
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [_clean(item, keep_nonfinite=keep_nonfinite) for item in value]
    return None


def _compact_json(value: Any) -> str | None:
    """JSON text for a value that arrived already parsed (`value` is clean and finite)."""
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except ValueError:  # an integer with more digits than int->str allows
        return None


# --- single fields (values come from a `_clean`-ed or proven-clean record) ---------------


def _session_id(value: object) -> str | None:
    """The session id as text, or None when it cannot identify a session."""
    if type(value) is str:
        return value if value.strip() else None
    if type(value) is int:
        try:
            return str(value)
        except ValueError:  # more digits than int->str allows: not an id
            return None
    return None


def _text_field(value: object, field: str, problems: list[str]) -> str | None:
    """Text as is; a number becomes its text; anything else is invalid."""
    if value is None or type(value) is str:
        return value
    if type(value) is int:
        try:
            return str(value)
        except ValueError:
            _invalid(problems, field, value, "is too long a number for text")
            return None
    if type(value) is float and isfinite(value):
        return repr(value)
    _invalid(problems, field, value, "is not text")
    return None


def _float_field(value: object, field: str, problems: list[str]) -> float | None:
    """A finite float from a number or numeric text; anything else is invalid."""
    if type(value) is float and isfinite(value):
        return value
    if value is None:
        return None
    try:
        return _parse_float(value)
    except _InvalidError as error:
        _invalid(problems, field, value, str(error))
        return None


def _int_field(value: object, field: str, problems: list[str]) -> int | None:
    """A signed 64-bit integer from an integral number or numeric text."""
    if type(value) is int and _INT64_MIN <= value <= _INT64_MAX:
        return value
    if value is None:
        return None
    try:
        return _parse_int(value)
    except _InvalidError as error:
        _invalid(problems, field, value, str(error))
        return None


def _time_field(
    value: object, field: str, problems: list[str], *, zero_is_absent: bool
) -> int | None:
    """Epoch milliseconds within years 1970..9999 (what timestamptz and datetime hold).

    The API sends endTime 0 for a session that has not ended: that is an absent value,
    while createTime 0 is a wrong one.
    """
    if type(value) is int and 0 < value <= _MAX_TIME_MS:
        return value
    if value is None:
        return None
    try:
        time_ms = _parse_int(value)
    except _InvalidError as error:
        _invalid(problems, field, value, str(error))
        return None
    if time_ms == 0 and zero_is_absent:
        return None
    if 0 < time_ms <= _MAX_TIME_MS:
        return time_ms
    _invalid(problems, field, value, "is not a time in years 1970..9999 (ms)")
    return None


def _spark_conf(
    value: object, stored_value: object, problems: list[str]
) -> tuple[dict[str, Any] | None, str | None]:
    """(parsed object, text as received) for sparkConf, documented as a string of JSON.

    `stored_value` is the same value as it goes to `raw` (non-finite floats removed), used
    when the service sends an already parsed value instead of text.
    """
    if value is None:
        return None, None
    if type(value) is str:
        if not value.strip():  # an empty conf: nothing to parse, nothing wrong
            return None, value
        try:
            parsed = orjson.loads(value)  # strict: rejects NaN, Infinity, lone surrogates
        except orjson.JSONDecodeError:
            _invalid(problems, "sparkConf", value, "is not valid JSON")
            return None, value
        if type(parsed) is dict:
            if _JSON_NUL in value:
                parsed = _clean(parsed, keep_nonfinite=False)
            return parsed, value
        if parsed is None:  # the text "null": an empty conf
            return None, value
        _invalid(problems, "sparkConf", value, "is JSON but not an object")
        return None, value
    if type(stored_value) is dict:
        return stored_value, _compact_json(stored_value)
    _invalid(problems, "sparkConf", value, "is not an object")
    return None, _compact_json(stored_value)


# --- parsing numbers ------------------------------------------------------------------


class _InvalidError(ValueError):
    """A value that cannot be stored in its column; the message says why."""


def _parse_float(value: object) -> float:
    if type(value) is int:
        try:
            return float(value)
        except OverflowError:
            raise _InvalidError("is too large") from None
    if type(value) is float:
        raise _InvalidError("is not a finite number")  # finite floats never get here
    if type(value) is str:
        number = _float_from_text(value)
        if not isfinite(number):
            raise _InvalidError("is not a finite number")
        return number
    raise _InvalidError("is not a number")


def _parse_int(value: object) -> int:
    if type(value) is int:
        number = value
    elif type(value) is float:
        number = _float_to_int(value)
    elif type(value) is str:
        _check_numeric_text(value)
        try:
            number = int(value)
        except ValueError:  # "12.0", "1e3", or not a number at all
            number = _float_to_int(_float_from_text(value))
    else:
        raise _InvalidError("is not a number")
    if _INT64_MIN <= number <= _INT64_MAX:
        return number
    raise _InvalidError("is outside the signed 64-bit range")


def _float_to_int(number: float) -> int:
    if not isfinite(number):
        raise _InvalidError("is not a finite number")
    if not number.is_integer():
        raise _InvalidError("is not a whole number")
    return int(number)


def _float_from_text(text: str) -> float:
    _check_numeric_text(text)
    try:
        return float(text)
    except ValueError:
        raise _InvalidError("is not a number") from None


def _check_numeric_text(text: str) -> None:
    # Python also reads "1_000" and non-ASCII digits as numbers; JSON-minded senders
    # do not mean those, so they are refused rather than guessed at.
    if "_" in text or not text.isascii():
        raise _InvalidError("is not a number")


# --- problem texts --------------------------------------------------------------------


def _invalid(problems: list[str], field: str, value: object, why: str) -> None:
    """Record why `value` was dropped from `field` (None is stored instead)."""
    problems.append(f"{field} {_preview(value)} {why}")


def _preview(value: object) -> str:
    """A short, safe description of any value for a problem text (never huge, never raises)."""
    if isinstance(value, str):
        if len(value) <= _PREVIEW_CHARS:
            return repr(value)
        return f"{value[:_PREVIEW_CHARS]!r}... ({len(value)} chars)"
    if value is None or isinstance(value, bool | float):
        return repr(value)
    if isinstance(value, int):
        return repr(value) if value.bit_length() <= 64 else f"a {value.bit_length()}-bit integer"
    if isinstance(value, dict):
        return f"an object of {len(value)} keys"
    if isinstance(value, list | tuple):
        return f"a list of {len(value)} items"
    return f"a {type(value).__name__}"
