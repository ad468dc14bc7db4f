"""Parsing activities: the strings Bitrix24 sends become ``int``, ``bool``, ``DateTime``, ``Decimal``.

Bitrix24's legacy ``crm.activity.*`` methods send every scalar as a string (``"ID": "999"``,
``"COMPLETED": "Y"``), datetimes as ISO 8601 with the portal's UTC offset, and empty objects as the
PHP empty array ``[]``. The converters are chosen by the type word of each field in the catalogue
(:mod:`.fields`). No Airflow here (layer 2).
"""

from __future__ import annotations

import functools
import gc
import re
from collections.abc import Callable, Iterable, Mapping
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Final

import pendulum

from airflow_provider_b24.activities.fields import (
    ACTIVITY_FIELD_TYPES,
    BINDING_FIELD_TYPES,
    COMMUNICATION_FIELD_TYPES,
    ENTITY_SETTINGS_FIELD_TYPES,
    FILE_FIELD_TYPES,
    NO_DEADLINE_FIELDS,
)
from airflow_provider_b24.exceptions import Bitrix24Error

__all__ = ["ActivityParseError", "parse_activities", "parse_activity"]


class ActivityParseError(Bitrix24Error, ValueError):
    """A field of an activity holds a value its declared type cannot take.

    A fault in the portal's answer, not in the caller's arguments, and not transient: the same
    activity parses the same way on every retry. So it is a :class:`Bitrix24Error` that is not
    ``retryable`` (the failure policy says ``FAIL``), and still a ``ValueError`` as in 0.1.0.

    :ivar field: the field's path, e.g. ``DEADLINE`` or ``COMMUNICATIONS[0].ENTITY_ID``.
    :ivar value: the offending wire value.
    :ivar expected: the type word that was expected (``integer``, ``datetime``, ...).
    :ivar activity_id: the activity's ``ID`` once known (``None`` before).
    """

    def __init__(self, field: str, value: Any, expected: str, detail: str = "") -> None:
        self.field = field
        self.value = value
        self.expected = expected
        self.activity_id: Any = None
        self.detail = detail
        super().__init__(self._message())

    def _message(self) -> str:
        where = f"activity {self.activity_id}: " if self.activity_id is not None else ""
        shown = repr(self.value)
        if len(shown) > 120:  # a 10 MB value must not become a 10 MB message (and log line)
            shown = f"{shown[:100]}... ({len(shown)} characters)"
        text = f"{where}field {self.field}: cannot parse {shown} as {self.expected}"
        return f"{text} ({self.detail})" if self.detail else text

    def _render(self) -> str:
        return self._message()

    def with_activity_id(self, activity_id: Any) -> ActivityParseError:
        """Name the activity in the message (set once the row's ID is known)."""
        self.activity_id = activity_id
        self.description = self._message()
        self.args = (self.description,)
        return self


_INT_RE = re.compile(r"-?[0-9]+")
# Bitrix24 writes ``YYYY-MM-DDThh:mm:ss±hh:mm``; accept fractions, ``Z`` and ``±hhmm`` as well. The
# offset is mandatory: a naive value cannot be placed in time (and comes back from XCom as UTC).
_DATETIME_RE = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[T ]([0-9]{2}):([0-9]{2})(?::([0-9]{2})(?:\.([0-9]{1,9}))?)?"
    r"(?:(Z)|([+-])([0-9]{2}):?([0-9]{2}))"
)
_DATE_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_NO_DEADLINE_PREFIX = "9999-"


def _to_int(field: str, value: Any, expected: str = "integer") -> Any:
    if value is None or value == "":
        return value
    if isinstance(value, bool):
        raise ActivityParseError(field, value, expected, "a boolean is not an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit():  # the usual "123", without a regex
        return int(value)
    if isinstance(value, str) and _INT_RE.fullmatch(value.strip()):
        return int(value.strip())
    raise ActivityParseError(field, value, expected)


def _to_bool(field: str, value: Any) -> Any:
    if value is None or value == "" or isinstance(value, bool):
        return value
    if isinstance(value, str):
        flag = value.strip().upper()
        if flag == "Y":
            return True
        if flag == "N":
            return False
    raise ActivityParseError(field, value, "char", "expected 'Y' or 'N'")


def _to_datetime(field: str, value: Any) -> Any:
    if value is None or value == "":
        return value
    if isinstance(value, pendulum.DateTime):
        return value
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ActivityParseError(field, value, "datetime", "no UTC offset")
        # A stdlib datetime with a fixed offset breaks XCom; pendulum's FixedTimezone does not.
        return pendulum.instance(value)
    if not isinstance(value, str):
        raise ActivityParseError(field, value, "datetime")
    text = value.strip()
    if field in NO_DEADLINE_FIELDS and text.startswith(_NO_DEADLINE_PREFIX):
        return None
    match = _DATETIME_RE.fullmatch(text)
    if match is None:
        raise ActivityParseError(
            field, value, "datetime", "expected ISO 8601 with a UTC offset, e.g. 2020-09-27T13:26:55+02:00"
        )
    year, month, day, hour, minute, second, fraction, zulu, sign, off_h, off_m = match.groups()
    offset = 0 if zulu else (int(off_h) * 3600 + int(off_m) * 60) * (-1 if sign == "-" else 1)
    try:
        if abs(offset) >= 86400:
            raise ValueError("UTC offset out of range")
        # Built directly (pendulum.parse is several times slower): a pendulum DateTime with a
        # FixedTimezone, exactly what pendulum.parse returns for such a string.
        return pendulum.DateTime(
            int(year),
            int(month),
            int(day),
            int(hour),
            int(minute),
            int(second or 0),
            int((fraction or "0")[:6].ljust(6, "0")),
            tzinfo=_fixed_timezone(offset),
        )
    except (ValueError, OverflowError) as err:
        raise ActivityParseError(field, value, "datetime", str(err)) from err


@functools.lru_cache(maxsize=64)
def _fixed_timezone(offset_s: int) -> pendulum.FixedTimezone:
    return pendulum.FixedTimezone(offset_s)


def _to_date(field: str, value: Any) -> Any:
    if value is None or value == "" or isinstance(value, date):
        return value
    if isinstance(value, str) and _DATE_RE.fullmatch(value.strip()):
        try:
            parsed = pendulum.parse(value.strip(), exact=True)
        except ValueError as err:
            raise ActivityParseError(field, value, "date", str(err)) from err
        if isinstance(parsed, pendulum.Date):
            return parsed
    raise ActivityParseError(field, value, "date", "expected YYYY-MM-DD")


def _to_decimal(field: str, value: Any) -> Any:
    if value is None or value == "" or isinstance(value, Decimal):
        return value
    if isinstance(value, bool):
        raise ActivityParseError(field, value, "double", "a boolean is not a number")
    if isinstance(value, int | float | str):
        try:
            number = Decimal(str(value).strip())
        except InvalidOperation as err:
            raise ActivityParseError(field, value, "double") from err
        if number.is_finite():
            return number
    raise ActivityParseError(field, value, "double")


def _to_object(field: str, value: Any) -> Any:
    if value is None or value == "":
        return value
    if isinstance(value, list):
        # PHP encodes an empty associative array as ``[]``; a non-empty list is kept as sent.
        return {} if not value else list(value)
    if isinstance(value, Mapping):
        return dict(value)
    raise ActivityParseError(field, value, "object")


def _to_string(field: str, value: Any) -> Any:
    # Strings, and anything a future portal sends in a string field, pass through unchanged.
    return value


# --------------------------------------------------------------------------------------------------
# The hot path. Each field gets one converter ``value -> typed value``, chosen once per field table
# and knowing its own field name: the usual wire shapes ("123", "Y", "2020-09-27T13:26:55+02:00")
# are converted inline, anything else goes to the general converters above, which accept the same
# values and raise the same errors. A nested object's error gets its path prefixed on the way out.
# --------------------------------------------------------------------------------------------------

Converter = Callable[[Any], Any]

_fromisoformat = datetime.fromisoformat
_DateTime = pendulum.DateTime
#: ``"+02:00"`` → ``FixedTimezone(7200)``: the offsets seen so far (a portal has one or two).
_ZONES: dict[str, pendulum.FixedTimezone] = {}
_OFFSET_RE = re.compile(r"[+-][0-9]{2}:[0-9]{2}")


def _zone(suffix: str) -> pendulum.FixedTimezone | None:
    """The zone of a ``±hh:mm`` suffix (cached), or ``None`` for anything else (the general path)."""
    if not _OFFSET_RE.fullmatch(suffix):
        return None
    offset = (int(suffix[1:3]) * 3600 + int(suffix[4:6]) * 60) * (-1 if suffix[0] == "-" else 1)
    if abs(offset) >= 86400:
        return None
    if len(_ZONES) < 256:
        _ZONES[suffix] = _fixed_timezone(offset)
    return _fixed_timezone(offset)


def _int_converter(field: str, expected: str = "integer") -> Converter:
    def convert(value: Any) -> Any:
        if value.__class__ is str and value.isdigit() and value.isascii():
            return int(value)
        return _to_int(field, value, expected)

    return convert


def _bool_converter(field: str) -> Converter:
    def convert(value: Any) -> Any:
        if value.__class__ is str:
            if value == "Y":
                return True
            if value == "N":
                return False
        return _to_bool(field, value)

    return convert


def _general(convert: Callable[[str, Any], Any], field: str) -> Converter:
    return lambda value: convert(field, value)


def _prefixed(err: ActivityParseError, prefix: str) -> ActivityParseError:
    """The same error with its field path under ``prefix`` (e.g. ``COMMUNICATIONS[0].``)."""
    err.field = f"{prefix}{err.field}"
    err.description = err._message()
    err.args = (err.description,)
    return err


def _element_wise(field_types: Mapping[str, str], expected: str) -> Callable[[str], Converter]:
    """A converter for a multiple field: a list of objects, each parsed with ``field_types``."""

    def for_field(field: str) -> Converter:
        def convert(value: Any) -> Any:
            if value == "":
                return value
            if isinstance(value, Mapping):
                # PHP encodes an array with non-contiguous integer keys as an object: keep key order.
                value = list(value.values())
            if not isinstance(value, list):
                raise ActivityParseError(field, value, expected, "expected a list")
            parse = _parser_for(field_types)
            items = []
            for position, item in enumerate(value):
                if not isinstance(item, Mapping):
                    raise ActivityParseError(f"{field}[{position}]", item, expected, "expected an object")
                try:
                    items.append(parse(item))
                except ActivityParseError as err:
                    raise _prefixed(err, f"{field}[{position}].") from err.__cause__
            return items

        return convert

    return for_field


def _entity_settings(field: str) -> Converter:
    def convert(value: Any) -> Any:
        value = _to_object(field, value)
        if isinstance(value, dict):
            try:
                return _parser_for(ENTITY_SETTINGS_FIELD_TYPES)(value)
            except ActivityParseError as err:
                raise _prefixed(err, f"{field}.") from err.__cause__
        return value

    return convert


_CONVERTERS: Final[dict[str, Callable[[str], Converter | None]]] = {
    "integer": _int_converter,
    "user": lambda field: _int_converter(field, "user"),
    "char": _bool_converter,
    "datetime": lambda field: _general(_to_datetime, field),
    "date": lambda field: _general(_to_date, field),
    "double": lambda field: _general(_to_decimal, field),
    "object": lambda field: _general(_to_object, field),
    # Strings, and anything a future portal sends in a string field, pass through unchanged.
    "string": lambda field: None,
    "crm_activity_binding": _element_wise(BINDING_FIELD_TYPES, "crm_activity_binding"),
    "crm_activity_communication": _element_wise(COMMUNICATION_FIELD_TYPES, "crm_activity_communication"),
    "diskfile": _element_wise(FILE_FIELD_TYPES, "diskfile"),
    "communication_entity_settings": _entity_settings,
}


def _converter(field: str, type_word: str) -> Converter | None:
    if type_word.startswith("crm_enum_"):
        return _int_converter(field, type_word)
    make = _CONVERTERS.get(type_word)
    return None if make is None else make(field)


# What the parser loop does for a field: the three common kinds are inlined there (one function call
# less per field, most of the cost at ~40 fields a row); any other field has its converter.
_INT: Final = object()
_FLAG: Final = object()
_DATETIME: Final = object()
_DEADLINE: Final = object()  # a datetime where 9999-12-31… means "no deadline"

_PARSERS: dict[int, Callable[[Mapping[str, Any]], dict[str, Any]]] = {}
#: The wire text of small integers, looked up instead of checked and converted: most integer fields of an
#: activity are enums, type IDs and user IDs below a thousand.
_SMALL_INTS: Final[dict[str, int]] = {str(number): number for number in range(1024)}


def _kind(field: str, type_word: str) -> Any:
    if type_word in ("integer", "user") or type_word.startswith("crm_enum_"):
        return _INT
    if type_word == "char":
        return _FLAG
    if type_word == "datetime":
        return _DEADLINE if field in NO_DEADLINE_FIELDS else _DATETIME
    return _converter(field, type_word)


def _parser_for(field_types: Mapping[str, str]) -> Callable[[Mapping[str, Any]], dict[str, Any]]:
    """The parser of one of this module's field tables (built once per table): ``None``, string and
    unknown fields are copied as they are, the rest converted by kind."""
    known = _PARSERS.get(id(field_types))
    if known is not None:
        return known
    kinds = {name: kind for name, word in field_types.items() if (kind := _kind(name, word)) is not None}
    general = {name: _converter(name, word) for name, word in field_types.items()}
    zones = _ZONES
    fromisoformat = _fromisoformat
    new_datetime = _DateTime

    def ordered(raw: Mapping[str, Any]) -> dict[str, Any]:
        """Field by field in the row's order, through the general converters (which accept every value
        the fast paths below accept, with the same result): the path that reports the first bad field
        of a row, taken when the fast parser meets an error."""
        parsed: dict[str, Any] = {}
        for key, value in raw.items():
            parsed[key] = general[key](value) if value is not None and key in kinds else value  # type: ignore[misc]
        return parsed

    # The fast parser: copy the row (strings, ``None`` and unknown fields are final as sent, in the
    # sent order), then convert only the typed fields, one tight loop per kind. Same converters, same
    # results; an error is re-raised by ``ordered`` so that it names the row's first bad field.
    int_keys = tuple(name for name, kind in kinds.items() if kind is _INT)
    flag_keys = tuple(name for name, kind in kinds.items() if kind is _FLAG)
    datetime_keys = tuple(
        (name, kind is _DEADLINE) for name, kind in kinds.items() if kind in (_DATETIME, _DEADLINE)
    )
    other_items = tuple(
        (name, kind) for name, kind in kinds.items() if kind not in (_INT, _FLAG, _DATETIME, _DEADLINE)
    )

    small_int = _SMALL_INTS.get

    def parser(raw: Mapping[str, Any]) -> dict[str, Any]:
        parsed = dict(raw)
        value_of = parsed.get
        try:
            for key in int_keys:
                value = value_of(key)
                if value.__class__ is str:
                    number = small_int(value)  # "0".."1023": enums, types, most user IDs
                    if number is not None:
                        parsed[key] = number
                        continue
                    if value.isdigit() and value.isascii():
                        parsed[key] = int(value)
                        continue
                if value is not None:
                    parsed[key] = general[key](value)  # type: ignore[misc]
            for key, no_deadline in datetime_keys:
                value = value_of(key)
                if value is None:
                    continue
                if (
                    value.__class__ is str
                    and len(value) == 25
                    and value[4:11:3] == "--T"
                    and value[13:17:3] == "::"
                    and value[11:13] != "24"
                    and (zone := zones.get(value[19:]) or _zone(value[19:])) is not None
                    and not (no_deadline and value[:5] == _NO_DEADLINE_PREFIX)
                ):
                    try:
                        wall = fromisoformat(value[:19])
                    except ValueError:
                        parsed[key] = general[key](value)  # type: ignore[misc]
                    else:
                        parsed[key] = new_datetime(
                            wall.year,
                            wall.month,
                            wall.day,
                            wall.hour,
                            wall.minute,
                            wall.second,
                            0,
                            tzinfo=zone,
                        )
                else:
                    parsed[key] = general[key](value)  # type: ignore[misc]
            for key in flag_keys:
                value = value_of(key)
                if value == "Y" and value.__class__ is str:
                    parsed[key] = True
                elif value == "N" and value.__class__ is str:
                    parsed[key] = False
                elif value is not None:
                    parsed[key] = general[key](value)  # type: ignore[misc]
            for key, convert in other_items:
                value = value_of(key)
                if value is not None:
                    parsed[key] = convert(value)
        except ActivityParseError:
            return ordered(raw)  # raises, naming the first bad field in the row's order
        return parsed

    _PARSERS[id(field_types)] = parser
    return parser


def parse_activity(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Turn one activity as Bitrix24 sends it into typed Python values.

    * ``integer``, ``user`` and ``crm_enum_*`` fields become ``int`` (compare enums with
      :class:`ActivityType` and friends; the values stay plain ``int``);
    * ``char`` flags ``Y``/``N`` become ``bool``;
    * ``datetime`` fields become pendulum ``DateTime`` keeping the portal's UTC offset (a stdlib
      ``datetime`` with a fixed offset would break Airflow's XCom); a ``DEADLINE`` or ``END_TIME`` of
      ``9999-12-31…`` (Bitrix24's "no deadline") becomes ``None``;
    * ``double`` fields become ``Decimal`` (money must not go through ``float``);
    * ``object`` fields sent as PHP's empty array ``[]`` (``SETTINGS``, ``PROVIDER_PARAMS``) become ``{}``;
    * ``BINDINGS``, ``COMMUNICATIONS``, ``FILES`` and ``WEBDAV_ELEMENTS`` are parsed element by element;
    * ``null`` stays ``None``, ``""`` stays ``""``, and fields not in :data:`ACTIVITY_FIELD_TYPES`
      (future or custom ones) pass through unchanged. Keys keep Bitrix24's UPPERCASE names.

    Parsing an already parsed activity returns an equal one.

    :param raw: one element of ``crm.activity.list`` or the result of ``crm.activity.get``.
    :raises ActivityParseError: (a ``ValueError``) naming the activity, the field and the value.
    """
    if not isinstance(raw, Mapping):
        raise TypeError(f"an activity must be a mapping of field names to values, got {type(raw).__name__}")
    try:
        return _parse_activity(raw)
    except ActivityParseError as err:
        err.with_activity_id(raw.get("ID"))
        raise


def parse_activities(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """:func:`parse_activity` over many rows (keeps their order).

    For a list or tuple of rows the cyclic garbage collector is paused while parsing: every parsed
    row holds several pendulum ``DateTime`` objects, which the collector tracks, and its passes over
    them (and over the worker's whole heap) cost about a third of the parsing time. Nothing parsed
    here forms a cycle; the collector's previous state is restored afterwards.
    """
    if isinstance(rows, list | tuple) and len(rows) >= _GC_PAUSE_ROWS and gc.isenabled():
        gc.disable()
        try:
            return _parse_rows(rows)
        finally:
            gc.enable()
    return _parse_rows(rows)


#: Fewer rows than this are parsed with the collector running (its passes are rare then anyway).
_GC_PAUSE_ROWS: Final = 1000


def _parse_rows(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    parse = _parse_activity
    parsed: list[dict[str, Any]] = []
    append = parsed.append
    for row in rows:
        if not isinstance(row, dict):
            append(parse_activity(row))  # a mapping of another kind, or the TypeError
            continue
        try:
            append(parse(row))
        except ActivityParseError as err:
            err.with_activity_id(row.get("ID"))
            raise
    return parsed


_parse_activity: Final = _parser_for(ACTIVITY_FIELD_TYPES)
