"""Deprecated: the activity field catalogue and parser moved to :mod:`airflow_provider_b24.activities`.

Kept importable for one release (0.1.0 code and docs named it); import the names from
:mod:`airflow_provider_b24.activities` (or its :mod:`~airflow_provider_b24.activities.fields` and
:mod:`~airflow_provider_b24.activities.parsing` modules) instead.
"""

from __future__ import annotations

import warnings

from airflow_provider_b24.activities.fields import (
    ACTIVITY_FIELD_TYPES,
    COMMUNICATION_FIELD_TYPES,
    FILE_FIELD_TYPES,
    MULTIPLE_FIELDS,
    NO_DEADLINE_FIELDS,
    SMART_PROCESS_MIN_TYPE_ID,
    Activity,
    ActivityStatus,
    ActivityType,
    DescriptionType,
    Direction,
    NotifyType,
    OwnerType,
    Priority,
)
from airflow_provider_b24.activities.parsing import ActivityParseError, parse_activity

warnings.warn(
    "airflow_provider_b24._activity_fields is deprecated and will be removed in 0.3.0; "
    "import from airflow_provider_b24.activities",
    DeprecationWarning,
    stacklevel=2,
)

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
