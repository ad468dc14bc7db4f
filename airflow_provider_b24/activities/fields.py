"""The field catalogue of a Bitrix24 CRM activity: every field, its wire type, and the enumerations.

One place for what the provider knows about the fields of ``crm.activity.*``: the ``type`` word the
portal declares for each field (``crm.activity.fields``), the nested objects (``COMMUNICATIONS``,
``FILES``, ``BINDINGS``), which fields ``select: ["*"]`` leaves out, and the integer enumerations.
Parsing (:mod:`.parsing`), ``select`` (:mod:`.select`) and the export's columns read it from here.

Sources (official docs):
https://apidocs.bitrix24.com/api-reference/crm/timeline/activities/activity-base/crm-activity-fields.html,
https://apidocs.bitrix24.com/api-reference/crm/timeline/activities/activity-base/crm-activity-list.html
and the enumerations in https://apidocs.bitrix24.com/api-reference/crm/data-types.html.
No Airflow here (layer 2).
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from enum import IntEnum
from typing import Any, Final, TypedDict

import pendulum

__all__ = [
    "ACTIVITY_FIELD_TYPES",
    "BINDING_FIELD_TYPES",
    "COMMUNICATION_FIELD_TYPES",
    "ENTITY_SETTINGS_FIELD_TYPES",
    "FILE_FIELD_TYPES",
    "MULTIPLE_FIELDS",
    "NO_DEADLINE_FIELDS",
    "SELECT_ONLY_FIELDS",
    "SMART_PROCESS_MIN_TYPE_ID",
    "STAR_FIELDS",
    "Activity",
    "ActivityStatus",
    "ActivityType",
    "DescriptionType",
    "Direction",
    "NotifyType",
    "OwnerType",
    "Priority",
]


# --------------------------------------------------------------------------------------------------
# Enumerations. ``0`` means "not set" in every one of them. Parsed activities keep plain ``int``
# values (they travel through XCom as JSON); compare them with these enums, e.g.
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
# The field table: every field ``crm.activity.fields`` lists, with the ``type`` word the portal
# declares for it. Converters are chosen by that word, so the table can be compared with a live
# ``crm.activity.fields`` answer.
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

#: One element of ``COMMUNICATIONS``: the ``crm.activity.list`` output (with ``ENTITY_SETTINGS``) and
#: ``crm.activity.communication.fields``.
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
ENTITY_SETTINGS_FIELD_TYPES: Final[Mapping[str, str]] = {
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
BINDING_FIELD_TYPES: Final[Mapping[str, str]] = {
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


#: Fields that ``select: ["*"]`` does not return: they must be named (the ``crm.activity.list`` page's
#: example selects ``["*", "COMMUNICATIONS"]``). ``STORAGE_ELEMENT_IDS`` is what the docs' cURL
#: example selects to get ``FILES``.
SELECT_ONLY_FIELDS: Final = frozenset(
    {"COMMUNICATIONS", "FILES", "BINDINGS", "WEBDAV_ELEMENTS", "STORAGE_ELEMENT_IDS"}
)

#: Fields ``select: ["*"]`` returns for an activity (the documented ``crm.activity.get`` sample),
#: in the field table's order: the CSV/parquet columns of an export when ``select`` has ``"*"``.
STAR_FIELDS: Final[tuple[str, ...]] = tuple(
    name
    for name in ACTIVITY_FIELD_TYPES
    if name not in SELECT_ONLY_FIELDS and name not in ("IS_INCOMING_CHANNEL", "ORIGIN_VERSION")
)
