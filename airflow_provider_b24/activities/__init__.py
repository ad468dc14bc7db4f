"""Bitrix24 CRM activities: the field catalogue, typed parsing, ID coercion, ``select`` and fetch by ID.

Layer 2 of the provider (see ``docs/architecture.md``): it builds on the REST client (layer 1) and
knows nothing about Airflow, so the operators, the sensor, the trigger and plain scripts share one
implementation. One concept per module; every public name is importable from this package:

* :mod:`.fields`: every activity field with its wire type, the enumerations (:class:`ActivityType`...),
  which fields ``select: ["*"]`` leaves out.
* :mod:`.parsing`: :func:`parse_activity` turns the strings Bitrix24 sends into ``int``, ``bool``,
  pendulum ``DateTime``, ``Decimal``... or raises :class:`ActivityParseError`.
* :mod:`.ids`: :func:`coerce_activity_ids` accepts the many shapes "some activity IDs" take in a DAG
  and returns a clean, de-duplicated ``list[int]`` or raises :class:`InvalidActivityIds`.
* :mod:`.select`: :func:`coerce_select` normalises ``select`` (or raises :class:`InvalidSelect`).
* :mod:`.fetch`: :func:`fetch_activities` fetches activities by ID with ``crm.activity.list``, 50 IDs
  per command and 50 commands per batch: 2,500 activities per request.
* :mod:`.waiting`: when fetched activities satisfy a sensor's ``until`` (shared by sensor and trigger).
"""

from __future__ import annotations

from airflow_provider_b24.activities.fetch import (
    COMMANDS_PER_BATCH,
    DEFAULT_CONCURRENCY,
    IDS_PER_COMMAND,
    FetchProgress,
    FetchResult,
    FetchStrategy,
    SupportsBatch,
    fetch_activities,
    max_requests,
)
from airflow_provider_b24.activities.fields import (
    ACTIVITY_FIELD_TYPES,
    COMMUNICATION_FIELD_TYPES,
    FILE_FIELD_TYPES,
    MULTIPLE_FIELDS,
    NO_DEADLINE_FIELDS,
    SELECT_ONLY_FIELDS,
    SMART_PROCESS_MIN_TYPE_ID,
    STAR_FIELDS,
    Activity,
    ActivityStatus,
    ActivityType,
    DescriptionType,
    Direction,
    NotifyType,
    OwnerType,
    Priority,
)
from airflow_provider_b24.activities.ids import IDS_SHOWN, InvalidActivityIds, coerce_activity_ids, format_ids
from airflow_provider_b24.activities.parsing import ActivityParseError, parse_activities, parse_activity
from airflow_provider_b24.activities.select import InvalidSelect, coerce_select

__all__ = [
    "ACTIVITY_FIELD_TYPES",
    "COMMANDS_PER_BATCH",
    "COMMUNICATION_FIELD_TYPES",
    "DEFAULT_CONCURRENCY",
    "FILE_FIELD_TYPES",
    "IDS_PER_COMMAND",
    "IDS_SHOWN",
    "MULTIPLE_FIELDS",
    "NO_DEADLINE_FIELDS",
    "SELECT_ONLY_FIELDS",
    "SMART_PROCESS_MIN_TYPE_ID",
    "STAR_FIELDS",
    "Activity",
    "ActivityParseError",
    "ActivityStatus",
    "ActivityType",
    "DescriptionType",
    "Direction",
    "FetchProgress",
    "FetchResult",
    "FetchStrategy",
    "InvalidActivityIds",
    "InvalidSelect",
    "NotifyType",
    "OwnerType",
    "Priority",
    "SupportsBatch",
    "coerce_activity_ids",
    "coerce_select",
    "fetch_activities",
    "format_ids",
    "max_requests",
    "parse_activities",
    "parse_activity",
]
