"""Raw ListLivyComputeSessions records -> SessionRecord, with the cleaning rules (pure).

DESIGN §4: NUL characters are removed from all text, `raw` included (PostgreSQL rejects
them); lone UTF-16 surrogates (a `"\\ud800"` escape without its pair, which no UTF-8 text
can hold) become U+FFFD, the Unicode replacement character, so the session is stored with
a visible mark where the broken character was, not dropped (neither is counted as an
invalid value: the rest of the text is kept); numbers sent as text are parsed; a value
that cannot be parsed becomes None and is counted; a record without a usable sessionId
is skipped and counted. Nothing here raises on bad data: one odd record must never stop
a harvest.

This runs for every record of every page, so a record with the documented types and
nothing to clean takes a straight path (`_normalize_documented`): its checks are fused
into one function, without a call per field. Every other record takes the general path
(`_normalize`), which cleans, copies and coerces; both give the same result for the
records the straight path takes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from math import isfinite
from typing import Any, Final

import orjson

from harvester.records import ComputeId, Gateway, NormalizedPage, SessionId, SessionRecord

_NUL: Final = "\x00"
#: Any UTF-16 surrogate code point in a str is a lone one (parsers join the valid pairs).
_SURROGATE: Final = re.compile("[\ud800-\udfff]")
_REPLACEMENT: Final = "\ufffd"
#: How `\x00` looks inside JSON text; its presence means a parsed value may hold a NUL.
_JSON_NUL: Final = "\\u0000"
_INT64_MIN: Final = -(2**63)
_INT64_MAX: Final = 2**63 - 1
#: The integers orjson writes (the store serializes pages with it) and reads as integers.
_UINT64_MAX: Final = 2**64 - 1
#: 9999-12-31T23:59:59.999Z: timestamptz and Python's datetime both end in year 9999.
_MAX_TIME_MS: Final = 253_402_300_799_999
#: Deepest nesting kept in `raw` and `spark_conf` (the record itself is level 1). The store
#: serializes each page with orjson, which refuses 254 levels; real records nest 2 or 3.
MAX_DEPTH: Final = 100
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
    if type(raw) is dict:
        fast = _normalize_documented(raw, gateway)
        if fast is not None:
            return fast
    try:
        return _normalize(raw, gateway)
    except (_TooDeepError, RecursionError):
        # Not a session the API would send; storing it would fail the whole page.
        return None, [f"skipped: nested more than {MAX_DEPTH} levels deep"]


#: The fields of a session as the API documents them; others are kept in `raw` only.
_DOCUMENTED_KEYS: Final = frozenset(
    ("sessionId", "computeId", "name", "state", "queue", "info", "webUI", "sparkConf",
     "createTime", "endTime", "cuHours", "vcoreSeconds", "mbSeconds")
)  # fmt: skip


def _normalize_documented(
    raw: dict[str, Any], gateway: Gateway
) -> tuple[SessionRecord, list[str]] | None:
    """`_normalize` for the common record, in one pass without per-field calls.

    Takes a record whose documented fields are absent, None or of their documented type
    and range, with no NUL and no lone surrogate anywhere; returns None for anything
    else, which `_normalize` then handles. For the records it takes, the result is the
    same as `_normalize`'s (a property test holds them to that).
    """
    get = raw.get
    session_id = get("sessionId")
    compute_id = get("computeId")
    name = get("name")
    state = get("state")
    queue = get("queue")
    info = get("info")
    web_ui = get("webUI")
    conf = get("sparkConf")
    # Text fields: str or None; one join lets one search cover them all for NUL.
    if (
        type(session_id) is not str
        or not session_id.strip()
        or (compute_id is not None and type(compute_id) is not str)
        or (name is not None and type(name) is not str)
        or (state is not None and type(state) is not str)
        or (queue is not None and type(queue) is not str)
        or (info is not None and type(info) is not str)
        or (web_ui is not None and type(web_ui) is not str)
        or (conf is not None and type(conf) is not str)
    ):
        return None
    text = "".join(
        [session_id, compute_id or "", name or "", state or "", queue or "", info or "",
         web_ui or "", conf or ""]
    )  # fmt: skip
    if _NUL in text or not (text.isascii() or _SURROGATE.search(text) is None):
        return None
    create_time_ms = get("createTime")
    end_time_ms = get("endTime")
    cu_hours = get("cuHours")
    vcore_seconds = get("vcoreSeconds")
    mb_seconds = get("mbSeconds")
    if (
        (
            create_time_ms is not None
            and (type(create_time_ms) is not int or not 0 < create_time_ms <= _MAX_TIME_MS)
        )
        or (
            end_time_ms is not None
            and (type(end_time_ms) is not int or not 0 <= end_time_ms <= _MAX_TIME_MS)
        )
        or (
            vcore_seconds is not None
            and (type(vcore_seconds) is not int or not _INT64_MIN <= vcore_seconds <= _INT64_MAX)
        )
        or (
            mb_seconds is not None
            and (type(mb_seconds) is not int or not _INT64_MIN <= mb_seconds <= _INT64_MAX)
        )
    ):
        return None
    if type(cu_hours) is not float or not isfinite(cu_hours):
        if type(cu_hours) is int and _INT64_MIN <= cu_hours <= _INT64_MAX:
            cu_hours = float(cu_hours)
        elif cu_hours is not None:
            return None
    if not _DOCUMENTED_KEYS.issuperset(raw):
        # Other fields only go to `raw`: they must be storable as they are.
        extra = raw.keys() - _DOCUMENTED_KEYS
        try:
            keys = "".join(extra)
        except TypeError:  # a key that is not text
            return None
        if _NUL in keys or not _is_utf8(keys):
            return None
        if not _is_clean_list([raw[key] for key in extra], 1):
            return None
    problems: list[str] = []
    if conf is None:
        spark_conf, spark_conf_raw, proxy_user = None, None, None
    else:
        spark_conf, spark_conf_raw = _spark_conf(conf, conf, problems)
        proxy_user = spark_conf.get("proxyUser") if spark_conf is not None else None
    # Positional: a dozen keyword arguments cost more than the rest of this function.
    record = SessionRecord(
        session_id,  # type: ignore[arg-type]  # a SessionId: checked to be usable above
        gateway.workspace_id,
        compute_id or gateway.compute_id,  # type: ignore[arg-type]  # a ComputeId
        gateway.region_id,
        name,
        state,
        spark_conf,
        spark_conf_raw,
        proxy_user if type(proxy_user) is str else None,
        queue,
        None if info == "null" else info,
        web_ui,
        create_time_ms,
        end_time_ms or None,  # 0: not ended yet
        cu_hours,
        vcore_seconds,
        mb_seconds,
        dict(raw),  # a copy, so the record never shares its top level with the caller
    )
    if problems:
        prefix = f"session {_preview(session_id)}: "
        problems = [prefix + problem for problem in problems]
    return record, problems


def _normalize(raw: object, gateway: Gateway) -> tuple[SessionRecord | None, list[str]]:
    if not isinstance(raw, dict):
        return None, [f"skipped: not an object but {_preview(raw)}"]
    source: dict[str, Any]  # fields are read from here: NUL-free, numbers as received
    stored: dict[str, Any]  # what goes to the `raw` column: NUL-free and storable
    if type(raw) is dict and _is_clean_dict(raw, 1):
        source = raw
        stored = dict(raw)  # a copy, so the record never shares its top level with the caller
    else:
        source = _clean(raw, storable=False)
        stored = _clean(source, storable=True)
    get = source.get

    session_id = _session_id(get("sessionId"))
    if session_id is None:
        return None, [f"skipped: no usable sessionId (got {_preview(get('sessionId'))})"]

    problems: list[str] = []
    spark_conf, spark_conf_raw = _spark_conf(get("sparkConf"), stored.get("sparkConf"), problems)
    proxy_user = spark_conf.get("proxyUser") if spark_conf is not None else None
    compute_id = _text_field(get("computeId"), "computeId", problems)
    name = _text_field(get("name"), "name", problems)
    state = _text_field(get("state"), "state", problems)
    queue = _text_field(get("queue"), "queue", problems)
    info = _text_field(get("info"), "info", problems)
    web_ui = _text_field(get("webUI"), "webUI", problems)
    create_time_ms = _time_field(get("createTime"), "createTime", problems, zero_is_absent=False)
    end_time_ms = _time_field(get("endTime"), "endTime", problems, zero_is_absent=True)
    # `source` may still hold NaN (`_clean` keeps it when not storable): counted here.
    cu_hours = _float_field(get("cuHours"), "cuHours", problems)
    vcore_seconds = _int_field(get("vcoreSeconds"), "vcoreSeconds", problems)
    mb_seconds = _int_field(get("mbSeconds"), "mbSeconds", problems)
    record = SessionRecord(
        session_id=SessionId(session_id),
        workspace_id=gateway.workspace_id,
        compute_id=ComputeId(compute_id) if compute_id else gateway.compute_id,
        region_id=gateway.region_id,
        name=name,
        state=state,
        spark_conf=spark_conf,
        spark_conf_raw=spark_conf_raw,
        proxy_user=proxy_user if type(proxy_user) is str else None,
        queue=queue,
        info=None if info == "null" else info,
        web_ui=web_ui,
        create_time_ms=create_time_ms,
        end_time_ms=end_time_ms,
        cu_hours=cu_hours,
        vcore_seconds=vcore_seconds,
        mb_seconds=mb_seconds,
        raw=stored,
    )
    if problems:
        prefix = f"session {_preview(session_id)}: "
        problems = [prefix + problem for problem in problems]
    return record, problems


# --- cleaning whole values ------------------------------------------------------------


def _is_clean_dict(obj: dict[Any, Any], depth: int) -> bool:
    """True when `obj` can be stored as is: JSON types only, text keys, no NUL, finite
    floats, 64-bit integers, at most MAX_DEPTH levels (`depth` is the level of `obj`).

    Exact type checks on purpose: this is the per-record hot path, and anything unusual
    (a subclass, a tuple) simply takes the slow path through `_clean`.
    """
    try:
        keys = "".join(obj)  # all keys at once: one call instead of one per key
    except TypeError:  # a key that is not text
        return False
    if _NUL in keys or not _is_utf8(keys):
        return False
    return _is_clean_list(obj.values(), depth)


def _is_clean_list(items: Iterable[Any], depth: int) -> bool:
    """True when every item can be stored as is (see `_is_clean_dict`)."""
    for value in items:
        kind = type(value)
        if kind is str:
            if _NUL in value or not _is_utf8(value):
                return False
        elif kind is int:
            if not _INT64_MIN <= value <= _UINT64_MAX:
                return False
        elif value is None or kind is bool:
            continue
        elif kind is float:
            if not isfinite(value):
                return False
        elif kind is dict:
            if depth >= MAX_DEPTH or not _is_clean_dict(value, depth + 1):
                return False
        elif kind is list:
            if depth >= MAX_DEPTH or not _is_clean_list(value, depth + 1):
                return False
        else:
            return False
    return True


def _clean(value: Any, *, storable: bool, depth: int = 1) -> Any:
    """A NUL-free copy of `value` made of plain JSON types only; never mutates `value`.

    `storable` also makes numbers fit jsonb and orjson: non-finite floats become None and
    integers beyond 64 bits become floats, as orjson would have read them. What a JSON
    parser never produces is made to fit: tuples become lists, keys that are not text
    become a short description, other values become None. Raises _TooDeepError for
    containers nested deeper than MAX_DEPTH (`depth` is the level of `value`).
    """
    if isinstance(value, str):
        return _clean_text(value)
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        if not storable or _INT64_MIN <= value <= _UINT64_MAX:
            return int(value)
        try:
            return float(value)
        except OverflowError:
            return None
    if isinstance(value, float):
        return None if storable and not isfinite(value) else float(value)
    if isinstance(value, dict | list | tuple) and depth > MAX_DEPTH:
        raise _TooDeepError
    if isinstance(value, dict):
        return {
            (_clean_text(key) if isinstance(key, str) else _preview(key)): _clean(
                item, storable=storable, depth=depth + 1
            )
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [_clean(item, storable=storable, depth=depth + 1) for item in value]
    return None


def _is_utf8(text: str) -> bool:
    """True unless `text` holds a lone surrogate; ASCII (nearly all text) is O(1)."""
    return text.isascii() or _SURROGATE.search(text) is None


def _clean_text(text: str) -> str:
    """Text PostgreSQL and orjson accept: no NUL, lone surrogates replaced by U+FFFD."""
    text = str(text).replace(_NUL, "")
    return text if _is_utf8(text) else _SURROGATE.sub(_REPLACEMENT, text)


class _TooDeepError(Exception):
    """A value nested deeper than MAX_DEPTH levels."""


def _compact_json(value: Any) -> str:
    """JSON text for a value that arrived already parsed (`value` is clean and storable)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


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
        return str(value)
    _invalid(problems, field, value, "is not text")
    return None


def _float_field(value: object, field: str, problems: list[str]) -> float | None:
    """A finite float from a number or numeric text; anything else is invalid."""
    if value is None:
        return None
    try:
        return _parse_float(value)
    except _InvalidError as error:
        _invalid(problems, field, value, str(error))
        return None


def _int_field(value: object, field: str, problems: list[str]) -> int | None:
    """A signed 64-bit integer from an integral number or numeric text."""
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
    _invalid(problems, field, value, "is not a time in ms after 1970-01-01 and before year 10000")
    return None


def _spark_conf(
    value: object, stored_value: object, problems: list[str]
) -> tuple[dict[str, Any] | None, str | None]:
    """(parsed object, text as received) for sparkConf, documented as a string of JSON.

    `stored_value` is the same value as it goes to `raw` (made storable), used
    when the service sends an already parsed value instead of text.
    """
    if value is None:
        return None, None
    if type(value) is str:
        if not value.strip():  # an empty conf: nothing to parse, nothing wrong
            return None, value
        lenient = False
        try:
            parsed = orjson.loads(value)  # strict: rejects NaN, Infinity, lone surrogates
        except orjson.JSONDecodeError:
            try:  # the stdlib reads lone surrogates; cleaning below makes them storable
                parsed = json.loads(value, parse_constant=_refuse_constant)
                lenient = True
            except (ValueError, RecursionError):
                _invalid(problems, "sparkConf", value, "is not valid JSON")
                return None, value
        if type(parsed) is dict:
            if lenient or _may_need_cleaning(value):
                try:
                    parsed = _clean(parsed, storable=True)
                except (_TooDeepError, RecursionError):
                    _invalid(problems, "sparkConf", value, f"is nested more than {MAX_DEPTH} deep")
                    return None, value
            return parsed, value
        if parsed is None:  # the text "null": an empty conf
            return None, value
        _invalid(problems, "sparkConf", value, "is JSON but not an object")
        return None, value
    if type(stored_value) is dict:
        return stored_value, _compact_json(stored_value)
    _invalid(problems, "sparkConf", value, "is not an object")
    return None, _compact_json(stored_value)


def _refuse_constant(name: str) -> object:
    """NaN and Infinity are not JSON: refuse them as orjson does."""
    raise ValueError(f"{name} is not JSON")


def _may_need_cleaning(conf_text: str) -> bool:
    """Whether JSON text may hold a NUL (as `\\u0000`) or nest more than MAX_DEPTH levels.

    orjson reads up to 1024 levels, so depth needs a check, and each level needs a bracket.
    One-character searches are memchr-fast and an ordinary conf has no backslash, no "["
    and a single "{": those skip the slower counting.
    """
    if "\\" not in conf_text and "[" not in conf_text:
        first = conf_text.find("{")
        if conf_text.find("{", first + 1) == -1:
            return False
    return _JSON_NUL in conf_text or conf_text.count("{") + conf_text.count("[") > MAX_DEPTH


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
        if isfinite(value):
            return value
        raise _InvalidError("is not a finite number")
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
