"""The ``crm.activity.*`` field catalogue and the wire key order, from ``crm.activity.fields``
(https://apidocs.bitrix24.com/api-reference/crm/timeline/activities/activity-base/crm-activity-fields.html)
and ``crm.activity.communication.fields``.

One table drives ``crm.activity.fields``, the typed filter comparisons and the ``select *`` shape.
"""

from __future__ import annotations

from typing import Final, NamedTuple, TypedDict

__all__ = [
    "ACTIVITY_FIELDS",
    "COMMUNICATION_FIELDS",
    "DATETIME_FIELDS",
    "DEFAULT_KEYS",
    "INTEGER_FIELDS",
    "NUMERIC_FIELDS",
    "ON_REQUEST_KEYS",
    "FieldSpec",
    "field_description",
]


class FieldSpec(NamedTuple):
    """One row of the field table."""

    type: str
    title: str
    required: bool = False
    read_only: bool = False
    immutable: bool = False
    multiple: bool = False
    deprecated: bool = False


class FieldDescription(TypedDict, total=False):
    """One value of ``crm.activity.fields``'s result."""

    type: str
    isRequired: bool
    isReadOnly: bool
    isImmutable: bool
    isMultiple: bool
    isDynamic: bool
    title: str
    isDeprecated: bool


_F = FieldSpec
# PROVIDER_ID and NOTIFY_VALUE are read-only in the docs' table but not in the JSON example;
# the live JSON is trusted over the table, so they are not read-only here.
ACTIVITY_FIELDS: Final[dict[str, FieldSpec]] = {
    "ID": _F("integer", "ID", read_only=True),
    "OWNER_ID": _F("integer", "Owner ID", immutable=True),
    "OWNER_TYPE_ID": _F("crm_enum_ownertype", "Owner type", immutable=True),
    "TYPE_ID": _F("crm_enum_activitytype", "Type", required=True, immutable=True),
    "PROVIDER_ID": _F("string", "Provider ID"),
    "PROVIDER_TYPE_ID": _F("string", "Provider type ID"),
    "PROVIDER_GROUP_ID": _F("string", "Connector Type"),
    "ASSOCIATED_ENTITY_ID": _F("integer", "Associated entity ID", read_only=True),
    "SUBJECT": _F("string", "Subject", required=True),
    "START_TIME": _F("datetime", "Start time"),
    "END_TIME": _F("datetime", "Deadline"),
    "DEADLINE": _F("datetime", "Deadline", read_only=True),
    "COMPLETED": _F("char", "Completed"),
    "STATUS": _F("crm_enum_activitystatus", "Status"),
    "RESPONSIBLE_ID": _F("user", "Responsible person", required=True),
    "PRIORITY": _F("crm_enum_activitypriority", "Priority"),
    "NOTIFY_TYPE": _F("crm_enum_activitynotifytype", "Notification type"),
    "NOTIFY_VALUE": _F("integer", "Notification value"),
    "DESCRIPTION": _F("string", "Description"),
    "DESCRIPTION_TYPE": _F("crm_enum_contenttype", "Description type"),
    "DIRECTION": _F("crm_enum_activitydirection", "Direction"),
    "LOCATION": _F("string", "Location"),
    "CREATED": _F("datetime", "Created", read_only=True),
    "AUTHOR_ID": _F("user", "Created by", read_only=True),
    "LAST_UPDATED": _F("datetime", "Modified", read_only=True),
    "EDITOR_ID": _F("user", "Modified by", read_only=True),
    "SETTINGS": _F("object", "Settings"),
    "ORIGIN_ID": _F("string", "Origin ID"),
    "ORIGINATOR_ID": _F("string", "Originator ID"),
    "RESULT_STATUS": _F("integer", "Result status"),
    "RESULT_STREAM": _F("integer", "Result stream"),
    "RESULT_SOURCE_ID": _F("string", "Result source ID"),
    "PROVIDER_PARAMS": _F("object", "Provider parameters"),
    "PROVIDER_DATA": _F("string", "Provider data"),
    "RESULT_MARK": _F("integer", "Result mark"),
    "RESULT_VALUE": _F("double", "Result value"),
    "RESULT_SUM": _F("double", "Result sum"),
    "RESULT_CURRENCY_ID": _F("string", "Result currency"),
    "AUTOCOMPLETE_RULE": _F("integer", "Autocomplete rule"),
    "BINDINGS": _F("crm_activity_binding", "Bindings", read_only=True, multiple=True),
    "COMMUNICATIONS": _F("crm_activity_communication", "Communications", required=True, multiple=True),
    "FILES": _F("diskfile", "Added files", multiple=True),
    "WEBDAV_ELEMENTS": _F("diskfile", "Added documents", multiple=True, deprecated=True),
    "IS_INCOMING_CHANNEL": _F("char", "Incoming channel", read_only=True),
    "ORIGIN_VERSION": _F("string", "Origin version"),
}

COMMUNICATION_FIELDS: Final[dict[str, FieldSpec]] = {
    "ID": _F("integer", "ID", read_only=True),
    "ACTIVITY_ID": _F("integer", "Case", read_only=True),
    "ENTITY_ID": _F("integer", "Entity ID"),
    "ENTITY_TYPE_ID": _F("integer", "CRM object type"),
    "TYPE": _F("string", "Type"),
    "VALUE": _F("string", "Value"),
}

# Keys (and order) of one activity in crm.activity.get and in list output with select "*":
# exactly the documented crm.activity.get example.
DEFAULT_KEYS: Final[tuple[str, ...]] = (
    "ID", "OWNER_ID", "OWNER_TYPE_ID", "TYPE_ID", "PROVIDER_ID", "PROVIDER_TYPE_ID", "PROVIDER_GROUP_ID",
    "ASSOCIATED_ENTITY_ID", "SUBJECT", "CREATED", "LAST_UPDATED", "START_TIME", "END_TIME", "DEADLINE",
    "COMPLETED", "STATUS", "RESPONSIBLE_ID", "PRIORITY", "NOTIFY_TYPE", "NOTIFY_VALUE", "DESCRIPTION",
    "DESCRIPTION_TYPE", "DIRECTION", "LOCATION", "SETTINGS", "ORIGINATOR_ID", "ORIGIN_ID", "AUTHOR_ID",
    "EDITOR_ID", "PROVIDER_PARAMS", "PROVIDER_DATA", "RESULT_MARK", "RESULT_VALUE", "RESULT_SUM",
    "RESULT_CURRENCY_ID", "RESULT_STATUS", "RESULT_STREAM", "RESULT_SOURCE_ID", "AUTOCOMPLETE_RULE",
)  # fmt: skip

# Returned only when named in `select` (never by get or by "*").
ON_REQUEST_KEYS: Final[tuple[str, ...]] = (
    "COMMUNICATIONS", "FILES", "BINDINGS", "WEBDAV_ELEMENTS", "IS_INCOMING_CHANNEL", "ORIGIN_VERSION",
)  # fmt: skip

DATETIME_FIELDS: Final[frozenset[str]] = frozenset(
    name for name, spec in ACTIVITY_FIELDS.items() if spec.type == "datetime"
)
INTEGER_FIELDS: Final[frozenset[str]] = frozenset(
    name
    for name, spec in ACTIVITY_FIELDS.items()
    if spec.type in ("integer", "user") or spec.type.startswith("crm_enum_")
)
NUMERIC_FIELDS: Final[frozenset[str]] = INTEGER_FIELDS | frozenset(
    name for name, spec in ACTIVITY_FIELDS.items() if spec.type == "double"
)


def field_description(spec: FieldSpec) -> FieldDescription:
    """The JSON shape of one field in ``*.fields`` output."""
    out: FieldDescription = {
        "type": spec.type,
        "isRequired": spec.required,
        "isReadOnly": spec.read_only,
        "isImmutable": spec.immutable,
        "isMultiple": spec.multiple,
        "isDynamic": False,
        "title": spec.title,
    }
    if spec.deprecated:
        out["isDeprecated"] = True
    return out
