"""The field catalogue of a Bitrix24 CRM activity: wire types, enumerations and value converters.

Bitrix24's legacy ``crm.activity.*`` methods send every scalar as a string (``"ID": "999"``,
``"COMPLETED": "Y"``), datetimes as ISO 8601 with the portal's UTC offset, and empty objects as the
PHP empty array ``[]``. This module knows, for every field ``crm.activity.fields`` lists, which type
word the portal declares for it and how to turn the wire value into a Python value.

It is layer 2 (see ``docs/architecture.md``): no Airflow imports. Public names are re-exported from
:mod:`airflow_provider_b24.activities`; import them from there.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from enum import IntEnum
from typing import Any, Final, TypedDict

import pendulum

__all__ = [
    "ACTIVITY_FIELD_TYPES",
    "COMMUNICATION_FIELD_TYPES",
    "FILE_FIELD_TYPES",
    "MULTIPLE_FIELDS",
    "NO_DEADLINE_FIELDS",
    "SMART_PROCESS_MIN_TYPE_ID",
    "Activity",
    "ActivityParseError",
    "ActivityStatus",
    "ActivityType",
    "DescriptionType",
    "Direction",
    "NotifyType",
    "OwnerType",
    "Priority",
    "parse_activity",
]


# --------------------------------------------------------------------------------------------------
# Enumerations (reference §2.1, §2.2). ``0`` means "not set" in every one of them. Parsed activities
# keep plain ``int`` values (they travel through XCom as JSON); compare them with these enums, e.g.
# ``row["TYPE_ID"] == ActivityType.CALL``, or wrap one: ``ActivityType(row["TYPE_ID"])``.
# --------------------------------------------------------------------------------------------------


class ActivityType(IntEnum):
    """``TYPE_ID`` (``crm_enum_activitytype``)."""

    NOT_SET = 0
    MEETING = 1
    CALL = 2
    TASK = 3
    EMAIL = 4
    #: General activity ("Action"), e.g. an imported calendar event.
    ACTION = 5
    #: Provider activity ("User Action"): universal to-do, configurable and app activities.
    PROVIDER = 6


class OwnerType(IntEnum):
    """``OWNER_TYPE_ID`` and ``BINDINGS[].OWNER_TYPE_ID`` (CRM object type, ``crm_enum_ownertype``).

    Smart processes use type IDs from :data:`SMART_PROCESS_MIN_TYPE_ID` (128) upwards; those are
    portal-specific and therefore not members (``OwnerType(130)`` raises ``ValueError``).
    """

    NOT_SET = 0
    LEAD = 1
    DEAL = 2
    CONTACT = 3
    COMPANY = 4
    #: The legacy invoice.
    INVOICE = 5
    QUOTE = 7
    REQUISITE = 8
    ORDER = 14
    #: The new ("smart") invoice.
    SMART_INVOICE = 31
    SMART_DOCUMENT = 36
    SMART_B2E_DOC = 39


#: The first ``OWNER_TYPE_ID`` of a smart process (``DYNAMIC_<id>``).
SMART_PROCESS_MIN_TYPE_ID: Final = 128


class Direction(IntEnum):
    """``DIRECTION`` (``crm_enum_activitydirection``); meaningful for calls and e-mails."""

    NOT_SET = 0
    INCOMING = 1
    OUTGOING = 2


class ActivityStatus(IntEnum):
    """``STATUS`` (``crm_enum_activitystatus``)."""

    NOT_SET = 0
    PENDING = 1
    COMPLETED = 2
    AUTO_COMPLETED = 3


class Priority(IntEnum):
    """``PRIORITY`` (``crm_enum_activitypriority``)."""

    NOT_SET = 0
    LOW = 1
    MEDIUM = 2
    HIGH = 3


class DescriptionType(IntEnum):
    """``DESCRIPTION_TYPE`` (``crm_enum_contenttype``)."""

    NOT_SET = 0
    PLAIN_TEXT = 1
    BBCODE = 2
    HTML = 3


class NotifyType(IntEnum):
    """``NOTIFY_TYPE`` (``crm_enum_activitynotifytype``): the unit of ``NOTIFY_VALUE``."""

    NOT_SET = 0
    MINUTES = 1
    HOURS = 2
    DAYS = 3


# --------------------------------------------------------------------------------------------------
# The field table: every field of ``crm.activity.fields`` (reference §2) with the ``type`` word the
# portal declares for it. Converters are chosen by that word, so the table can be compared with a
# live ``crm.activity.fields`` answer.
# --------------------------------------------------------------------------------------------------

#: ``{FIELD: type word}`` for every documented activity field.
ACTIVITY_FIELD_TYPES: Final[Mapping[str, str]] = {
    "ID": "integer",
    "OWNER_ID": "integer",
    "OWNER_TYPE_ID": "crm_enum_ownertype",
    "TYPE_ID": "crm_enum_activitytype",
    "PROVIDER_ID": "string",
    "PROVIDER_TYPE_ID": "string",
    "PROVIDER_GROUP_ID": "string",
    "ASSOCIATED_ENTITY_ID": "integer",
    "SUBJECT": "string",
    "START_TIME": "datetime",
    "END_TIME": "datetime",
    "DEADLINE": "datetime",
    "COMPLETED": "char",
    "STATUS": "crm_enum_activitystatus",
    "RESPONSIBLE_ID": "user",
    "PRIORITY": "crm_enum_activitypriority",
    "NOTIFY_TYPE": "crm_enum_activitynotifytype",
    "NOTIFY_VALUE": "integer",
    "DESCRIPTION": "string",
    "DESCRIPTION_TYPE": "crm_enum_contenttype",
    "DIRECTION": "crm_enum_activitydirection",
    "LOCATION": "string",
    "CREATED": "datetime",
    "AUTHOR_ID": "user",
    "LAST_UPDATED": "datetime",
    "EDITOR_ID": "user",
    "SETTINGS": "object",
    "ORIGIN_ID": "string",
    "ORIGINATOR_ID": "string",
    "ORIGIN_VERSION": "string",
    "RESULT_STATUS": "integer",
    "RESULT_STREAM": "integer",
    "RESULT_SOURCE_ID": "string",
    "PROVIDER_PARAMS": "object",
    "PROVIDER_DATA": "string",
    "RESULT_MARK": "integer",
    "RESULT_VALUE": "double",
    "RESULT_SUM": "double",
    "RESULT_CURRENCY_ID": "string",
    "AUTOCOMPLETE_RULE": "integer",
    "BINDINGS": "crm_activity_binding",
    "COMMUNICATIONS": "crm_activity_communication",
    "FILES": "diskfile",
    "WEBDAV_ELEMENTS": "diskfile",
    "IS_INCOMING_CHANNEL": "char",
}

#: Fields declared ``isMultiple`` (lists of objects); parsed element by element.
MULTIPLE_FIELDS: Final = frozenset({"BINDINGS", "COMMUNICATIONS", "FILES", "WEBDAV_ELEMENTS"})

#: Fields where ``9999-12-31…`` is Bitrix24's way of saying "no deadline" (parsed to ``None``).
NO_DEADLINE_FIELDS: Final = frozenset({"DEADLINE", "END_TIME"})

#: One element of ``COMMUNICATIONS`` (reference §1.2 list output, §1.7 ``communication.fields``).
COMMUNICATION_FIELD_TYPES: Final[Mapping[str, str]] = {
    "ID": "integer",
    "ACTIVITY_ID": "integer",
    "TYPE": "string",
    "VALUE": "string",
    "ENTITY_ID": "integer",
    "ENTITY_TYPE_ID": "crm_enum_ownertype",
    "ENTITY_SETTINGS": "communication_entity_settings",
}

#: ``COMMUNICATIONS[].ENTITY_SETTINGS``: names are strings, ``COMPANY_ID`` is an ID.
_ENTITY_SETTINGS_FIELD_TYPES: Final[Mapping[str, str]] = {
    "HONORIFIC": "string",
    "NAME": "string",
    "SECOND_NAME": "string",
    "LAST_NAME": "string",
    "COMPANY_TITLE": "string",
    "COMPANY_ID": "integer",
}

#: One element of ``FILES`` / ``WEBDAV_ELEMENTS``: the list output ``{id, url}`` (lower case) and the
#: ``diskfile`` object ``{ID, FILE_ID, NAME, SIZE, BYTES, CAN_READ, VIEW_URL, PREVIEW_URL}``.
FILE_FIELD_TYPES: Final[Mapping[str, str]] = {
    "id": "integer",
    "url": "string",
    "ID": "integer",
    "FILE_ID": "integer",
    "NAME": "string",
    "SIZE": "string",  # human readable, e.g. "43 Kb"
    "BYTES": "integer",
    "CAN_READ": "char",
    "VIEW_URL": "string",
    "PREVIEW_URL": "string",
}

#: One element of ``BINDINGS``.
_BINDING_FIELD_TYPES: Final[Mapping[str, str]] = {
    "OWNER_ID": "integer",
    "OWNER_TYPE_ID": "crm_enum_ownertype",
}


class _Communication(TypedDict, total=False):
    ID: int
    ACTIVITY_ID: int
    TYPE: str
    VALUE: str
    ENTITY_ID: int
    ENTITY_TYPE_ID: int
    ENTITY_SETTINGS: dict[str, Any]


class _Binding(TypedDict, total=False):
    OWNER_ID: int
    OWNER_TYPE_ID: int


class Activity(TypedDict, total=False):
    """The shape of a parsed activity (what :func:`parse_activity` returns, keys as Bitrix24 names them).

    Every value may also be ``None`` (the portal sent ``null``) or ``""`` (it sent an empty string);
    fields the portal did not send are absent, and undocumented fields pass through unchanged.
    Annotate with it (``cast(Activity, row)``) to get key and type checking in your own code.
    """

    ID: int
    OWNER_ID: int
    OWNER_TYPE_ID: int
    TYPE_ID: int
    PROVIDER_ID: str | None
    PROVIDER_TYPE_ID: str | None
    PROVIDER_GROUP_ID: str | None
    ASSOCIATED_ENTITY_ID: int | None
    SUBJECT: str
    START_TIME: pendulum.DateTime | None
    END_TIME: pendulum.DateTime | None
    DEADLINE: pendulum.DateTime | None
    COMPLETED: bool
    STATUS: int
    RESPONSIBLE_ID: int
    PRIORITY: int
    NOTIFY_TYPE: int | None
    NOTIFY_VALUE: int | None
    DESCRIPTION: str | None
    DESCRIPTION_TYPE: int | None
    DIRECTION: int | None
    LOCATION: str | None
    CREATED: pendulum.DateTime | None
    AUTHOR_ID: int | None
    LAST_UPDATED: pendulum.DateTime | None
    EDITOR_ID: int | None
    SETTINGS: dict[str, Any] | None
    ORIGIN_ID: str | None
    ORIGINATOR_ID: str | None
    ORIGIN_VERSION: str | None
    RESULT_STATUS: int | None
    RESULT_STREAM: int | None
    RESULT_SOURCE_ID: str | None
    PROVIDER_PARAMS: dict[str, Any] | None
    PROVIDER_DATA: str | None
    RESULT_MARK: int | None
    RESULT_VALUE: Decimal | None
    RESULT_SUM: Decimal | None
    RESULT_CURRENCY_ID: str | None
    AUTOCOMPLETE_RULE: int | None
    BINDINGS: list[_Binding]
    COMMUNICATIONS: list[_Communication]
    FILES: list[dict[str, Any]]
    WEBDAV_ELEMENTS: list[dict[str, Any]]
    IS_INCOMING_CHANNEL: bool | None


# --------------------------------------------------------------------------------------------------
# Converters
# --------------------------------------------------------------------------------------------------


class ActivityParseError(ValueError):
    """A field of an activity holds a value its declared type cannot take.

    :ivar field: the field's path, e.g. ``DEADLINE`` or ``COMMUNICATIONS[0].ENTITY_ID``.
    :ivar value: the offending wire value.
    :ivar expected: the type word that was expected (``integer``, ``datetime``, ...).
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

    def with_activity_id(self, activity_id: Any) -> ActivityParseError:
        """Name the activity in the message (set once the row's ID is known)."""
        self.activity_id = activity_id
        self.args = (self._message(),)
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
        return _parse_fields(value, _ENTITY_SETTINGS_FIELD_TYPES, prefix=f"{field}.")
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
    "crm_activity_binding": _element_wise(_BINDING_FIELD_TYPES, "crm_activity_binding"),
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
