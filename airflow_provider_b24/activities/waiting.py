"""Waiting for activities: when a set of activities satisfies ``until`` ("exists" or "completed").

Shared by the sensor's ``poke`` and the deferrable trigger so that both decide "done" the same way.
No Airflow here (layer 2).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from airflow_provider_b24.activities.ids import format_ids
from airflow_provider_b24.activities.select import coerce_select
from airflow_provider_b24.exceptions import Bitrix24ArgumentError

__all__ = [
    "UNTIL_CHOICES",
    "UNTIL_COMPLETED",
    "UNTIL_EXISTS",
    "ActivityWaitStatus",
    "evaluate_activities",
    "select_for",
    "validate_until",
]

#: ``until="completed"``: every activity exists and has ``COMPLETED == "Y"``;
#: ``until="exists"``: every activity exists (whatever its state).
UNTIL_COMPLETED: Final = "completed"
UNTIL_EXISTS: Final = "exists"
UNTIL_CHOICES: Final = (UNTIL_COMPLETED, UNTIL_EXISTS)


def validate_until(until: Any) -> str:
    """Return ``until`` if it is one of :data:`UNTIL_CHOICES`, else a :class:`Bitrix24ArgumentError`
    (a ``ValueError``) naming the choices."""
    if until not in UNTIL_CHOICES:
        choices = ", ".join(repr(c) for c in UNTIL_CHOICES)
        raise Bitrix24ArgumentError(f"until must be one of {choices}, got {until!r}")
    return str(until)


def select_for(select: Any, until: str) -> Any:
    """The ``select`` to fetch with: the user's, plus ``COMPLETED`` when a field list would drop it.

    ``until="completed"`` must read ``COMPLETED``; a user's explicit field list (without ``*``) might
    not name it, so it is added (``ID`` is always added by the fetch itself).
    """
    if until != UNTIL_COMPLETED or select is None:
        return select
    fields = coerce_select(select)
    if "*" not in fields and "COMPLETED" not in fields:
        fields.append("COMPLETED")
    return fields


def _is_completed(row: Mapping[str, Any]) -> bool:
    """``COMPLETED`` as sent (``"Y"``/``"N"``) or already parsed (``True``/``False``)."""
    value = row.get("COMPLETED")
    return value is True or (isinstance(value, str) and value.strip().upper() == "Y")


@dataclass
class ActivityWaitStatus:
    """How far a set of activities is from satisfying ``until``.

    :ivar done: every ID satisfies ``until``.
    :ivar missing_ids: IDs the portal did not return (not created yet, deleted, or not visible).
    :ivar pending_ids: IDs that exist but are not completed (``until="completed"`` only).
    """

    done: bool
    missing_ids: list[int] = field(default_factory=list)
    pending_ids: list[int] = field(default_factory=list)

    def describe(self, total: int) -> str:
        """One log line: what is still awaited."""
        parts = []
        if self.missing_ids:
            parts.append(f"{len(self.missing_ids)} not found yet [{format_ids(self.missing_ids)}]")
        if self.pending_ids:
            parts.append(f"{len(self.pending_ids)} not completed yet [{format_ids(self.pending_ids)}]")
        ready = total - len(self.missing_ids) - len(self.pending_ids)
        return f"{ready}/{total} activities ready; waiting for " + "; ".join(parts)


def evaluate_activities(
    rows: Iterable[Mapping[str, Any]], missing_ids: Sequence[int], until: str
) -> ActivityWaitStatus:
    """Decide whether fetched activities satisfy ``until`` (shared by the sensor's poke and the trigger)."""
    pending = []
    if until == UNTIL_COMPLETED:
        for row in rows:
            if not _is_completed(row):
                pending.append(int(row["ID"]))
    missing = list(missing_ids)
    return ActivityWaitStatus(done=not missing and not pending, missing_ids=missing, pending_ids=pending)
