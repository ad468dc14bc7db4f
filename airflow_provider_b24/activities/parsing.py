"""Parsing activities: the strings Bitrix24 sends become ``int``, ``bool``, ``DateTime``, ``Decimal``.

Bitrix24's legacy ``crm.activity.*`` methods send every scalar as a string (``"ID": "999"``,
``"COMPLETED": "Y"``), datetimes as ISO 8601 with the portal's UTC offset, and empty objects as the
PHP empty array ``[]``. The converters are chosen by the type word of each field in the catalogue
(:mod:`.fields`). No Airflow here (layer 2).
"""

from __future__ import annotations

import functools
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


def _element_wise(field_types: Mapping[str, str], expected: str) -> Callable[[str, Any], Any]:
    """A converter for a multiple field: a list of objects, each parsed with ``field_types``."""

    def convert(field: str, value: Any) -> Any:
        if value is None or value == "":
            return value
        if isinstance(value, Mapping):
            # PHP encodes an array with non-contiguous integer keys as an object: keep key order.
            value = list(value.values())
        if not isinstance(value, list):
            raise ActivityParseError(field, value, expected, "expected a list")
        items = []
        for position, item in enumerate(value):
            where = f"{field}[{position}]"
            if not isinstance(item, Mapping):
                raise ActivityParseError(where, item, expected, "expected an object")
            items.append(_parse_fields(item, field_types, prefix=f"{where}."))
        return items

    return convert


def _entity_settings(field: str, value: Any) -> Any:
    value = _to_object(field, value)
    if isinstance(value, dict):
        return _parse_fields(value, ENTITY_SETTINGS_FIELD_TYPES, prefix=f"{field}.")
    return value


_CONVERTERS: Final[dict[str, Callable[[str, Any], Any]]] = {
    "integer": _to_int,
    "user": lambda field, value: _to_int(field, value, "user"),
    "char": _to_bool,
    "datetime": _to_datetime,
    "date": _to_date,
    "double": _to_decimal,
    "object": _to_object,
    "string": _to_string,
    "crm_activity_binding": _element_wise(BINDING_FIELD_TYPES, "crm_activity_binding"),
    "crm_activity_communication": _element_wise(COMMUNICATION_FIELD_TYPES, "crm_activity_communication"),
    "diskfile": _element_wise(FILE_FIELD_TYPES, "diskfile"),
    "communication_entity_settings": _entity_settings,
}


def _converter(type_word: str) -> Callable[[str, Any], Any]:
    if type_word.startswith("crm_enum_"):
        return lambda field, value: _to_int(field, value, type_word)
    return _CONVERTERS.get(type_word, _to_string)


_CONVERTER_TABLES: dict[int, dict[str, Callable[[str, Any], Any]]] = {}


def _converters_for(field_types: Mapping[str, str]) -> dict[str, Callable[[str, Any], Any]]:
    """``{field: converter}`` for one of this module's field tables, built once per table."""
    table = _CONVERTER_TABLES.get(id(field_types))
    if table is None:
        table = {name: _converter(type_word) for name, type_word in field_types.items()}
        _CONVERTER_TABLES[id(field_types)] = table
    return table


def _parse_fields(raw: Mapping[str, Any], field_types: Mapping[str, str], prefix: str = "") -> dict[str, Any]:
    converters = _converters_for(field_types)
    parsed: dict[str, Any] = {}
    for key, value in raw.items():
        convert = converters.get(key)
        parsed[key] = value if convert is None or value is None else convert(f"{prefix}{key}", value)
    return parsed


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
        return _parse_fields(raw, ACTIVITY_FIELD_TYPES)
    except ActivityParseError as err:
        err.with_activity_id(raw.get("ID"))
        raise


def parse_activities(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """:func:`parse_activity` over many rows (keeps their order)."""
    return [parse_activity(row) for row in rows]
