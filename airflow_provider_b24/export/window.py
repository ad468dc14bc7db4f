"""What an export asks for: the ``LAST_UPDATED`` window, the merged filter and the ``select``.

:func:`export_window` turns ``updated_from``/``updated_to`` (aware datetimes or ISO strings, with ``T``
or a space, as Jinja renders ``{{ data_interval_start }}``) into an :class:`ExportWindow` whose filter
carries an explicit UTC offset: ``>=LAST_UPDATED`` inclusive, ``<LAST_UPDATED`` exclusive, so
consecutive intervals cover every activity exactly once. :func:`merge_filter` adds it to a user filter
and refuses keys the export owns. No Airflow here (layer 2).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from airflow_provider_b24.activities.select import InvalidSelect, coerce_select
from airflow_provider_b24.export.errors import ExportArgumentError

__all__ = [
    "RESERVED_FILTER_KEYS",
    "ExportWindow",
    "export_window",
    "merge_filter",
    "normalise_select",
    "parse_bound",
]

#: Filter keys the export sets itself: a user filter naming them is a conflict, not a merge.
RESERVED_FILTER_KEYS: Final = frozenset({(">=", "LAST_UPDATED"), ("<", "LAST_UPDATED"), (">", "ID")})

_OPERATOR_CHARS: Final = frozenset("<>=!%@")


def parse_bound(value: Any, name: str) -> datetime:
    """An aware datetime from a datetime or an ISO 8601 string; naive or unreadable values raise.

    Accepts ``2024-01-01T00:00:00+00:00``, ``2024-01-01 00:00:00+00:00`` (how Jinja renders
    ``{{ data_interval_start }}``), ``Z`` and fractions. A value without a UTC offset is refused: the
    portal would read it in its own time zone and shift the window by hours.

    :param value: the bound as given (after template rendering).
    :param name: the argument's name, for the error message.
    :raises ExportArgumentError: naming the argument and the value.
    """
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        text = value.strip()
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            raise ExportArgumentError(
                f"{name}={value!r} is not an ISO 8601 datetime; expected e.g. '2024-01-01T00:00:00+00:00'"
            ) from None
        if len(text) <= 10:  # a bare date such as '2024-01-01'
            raise ExportArgumentError(f"{name}={value!r} is a date; give a datetime with a UTC offset")
    else:
        raise ExportArgumentError(
            f"{name} must be an ISO 8601 string or a datetime with a UTC offset, "
            f"got {type(value).__name__} {value!r}"
        )
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise ExportArgumentError(
            f"{name}={value!r} has no UTC offset; give one (e.g. '+00:00') so the window is unambiguous"
        )
    return parsed


def _ceil_second(moment: datetime) -> datetime:
    """The first whole second at or after ``moment`` (UTC)."""
    utc = moment.astimezone(UTC)
    if utc.microsecond:
        utc = utc.replace(microsecond=0) + timedelta(seconds=1)
    return utc


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()


@dataclass(frozen=True)
class ExportWindow:
    """A half-open ``LAST_UPDATED`` window ``[start, end)`` in UTC, on whole seconds.

    ``LAST_UPDATED`` has a resolution of one second, so rounding both bounds *up* to the next whole
    second selects exactly the same activities (for a whole-second ``t``: ``t >= a`` iff
    ``t >= ceil(a)``) while keeping the filter values simple.
    """

    start: datetime
    end: datetime

    @property
    def start_iso(self) -> str:
        """``start`` as ISO 8601 with an explicit ``+00:00`` offset."""
        return _iso(self.start)

    @property
    def end_iso(self) -> str:
        """``end`` as ISO 8601 with an explicit ``+00:00`` offset."""
        return _iso(self.end)

    def filter(self) -> dict[str, str]:
        """The ``crm.activity.list`` filter for this window."""
        return {">=LAST_UPDATED": self.start_iso, "<LAST_UPDATED": self.end_iso}

    def contains(self, moment: datetime) -> bool:
        """True when an activity updated at ``moment`` belongs to this window."""
        return self.start <= moment < self.end


def export_window(updated_from: Any, updated_to: Any) -> ExportWindow:
    """Validate the bounds and build the window (see :func:`parse_bound`).

    :raises ExportArgumentError: for a naive or unreadable bound, or ``updated_from >= updated_to``.
    """
    start = parse_bound(updated_from, "updated_from")
    end = parse_bound(updated_to, "updated_to")
    if start >= end:
        raise ExportArgumentError(
            f"updated_from ({start.isoformat()}) must be before updated_to ({end.isoformat()}); "
            "the window is [updated_from, updated_to)"
        )
    return ExportWindow(start=_ceil_second(start), end=_ceil_second(end))


def _split_filter_key(key: str) -> tuple[str, str]:
    """``'>=last_updated'`` -> ``('>=', 'LAST_UPDATED')`` (operator prefix, upper-cased field)."""
    text = key.strip()
    i = 0
    while i < len(text) and text[i] in _OPERATOR_CHARS:
        i += 1
    return text[:i], text[i:].strip().upper()


def merge_filter(window: ExportWindow, user_filter: Any = None) -> dict[str, Any]:
    """The user's filter plus the window; keys the export owns must not be in the user's filter.

    ``user_filter`` may be a dict or its JSON text (a rendered template). Narrowing conditions on the
    same fields (``>LAST_UPDATED``, ``<=LAST_UPDATED``, ``>=ID``...) are kept: Bitrix24 ANDs filter
    keys. ``>=LAST_UPDATED``/``<LAST_UPDATED`` would replace the window and ``>ID`` would break the
    keyset pagination, so they raise instead.

    :raises ExportArgumentError: for a filter that is not a dict, or a conflicting key.
    """
    if user_filter is None or user_filter == "":
        user: Mapping[str, Any] = {}
    elif isinstance(user_filter, Mapping):
        user = user_filter
    elif isinstance(user_filter, str):
        try:
            loaded = json.loads(user_filter)
        except ValueError:
            raise ExportArgumentError(f"filter={user_filter!r} is not a dict or its JSON text") from None
        if not isinstance(loaded, Mapping):
            raise ExportArgumentError(f"filter={user_filter!r} is not a dict or its JSON text")
        user = loaded
    else:
        raise ExportArgumentError(f"filter must be a dict, got {type(user_filter).__name__} {user_filter!r}")
    merged: dict[str, Any] = {}
    for key, value in user.items():
        if not isinstance(key, str):
            raise ExportArgumentError(f"filter key {key!r} must be a string such as '>=CREATED'")
        operator, field = _split_filter_key(key)
        if (operator, field) in RESERVED_FILTER_KEYS:
            what = "the keyset pagination" if field == "ID" else "the export window"
            raise ExportArgumentError(
                f"filter key {key!r} conflicts with {what}; set the window with updated_from/updated_to "
                "(the export adds '>=LAST_UPDATED', '<LAST_UPDATED' and '>ID' itself)"
            )
        merged[key] = value
    merged.update(window.filter())
    return merged


def normalise_select(select: Any) -> list[str]:
    """``select`` for ``crm.activity.list`` (see :func:`~airflow_provider_b24.activities.coerce_select`).

    ``None`` means ``["*"]``; ``ID`` is always included (the keyset pagination reads it).

    :raises ExportArgumentError: for something that is not a list of field names.
    """
    try:
        return coerce_select(select)
    except InvalidSelect as err:
        raise ExportArgumentError(str(err)) from None
