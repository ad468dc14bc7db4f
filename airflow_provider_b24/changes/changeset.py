"""What one change event carries: changed and deleted activity IDs, at most 2,500 per event.

2,500 is what one downstream fetch request reads (50 ``crm.activity.list`` commands of 50 IDs in one
batch), so a DAG run started by one event fetches its activities in one HTTP request.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

#: IDs (changed + deleted) in one event: one batched fetch downstream.
MAX_IDS_PER_EVENT: Final = 2500


@dataclass
class ChangeSet:
    """Changed (created or updated) and deleted activity IDs, each ascending and unique."""

    ids: list[int] = field(default_factory=list)
    deleted_ids: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ids) + len(self.deleted_ids)

    def payload(self, *, source: str, portal: str, cursor: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The event payload (JSON-plain): what a DAG run reads from ``extra["payload"]``."""
        body: dict[str, Any] = {
            "ids": list(self.ids),
            "deleted_ids": list(self.deleted_ids),
            "source": source,
            "portal": portal,
        }
        if cursor is not None:
            body["cursor"] = dict(cursor)
        return body


def _unique_sorted(values: Iterable[int]) -> list[int]:
    return sorted({int(v) for v in values})


def split_changes(
    ids: Iterable[int], deleted_ids: Iterable[int] = (), *, limit: int = MAX_IDS_PER_EVENT
) -> list[ChangeSet]:
    """Cut changes into events of at most ``limit`` IDs (changed first, then deleted), in ID order.

    An ID both changed and deleted is reported as deleted only (activity IDs are never reused).
    Returns ``[]`` when there is nothing.
    """
    if limit < 1:
        raise ValueError(f"limit must be a positive number of IDs, got {limit!r}")
    deleted = _unique_sorted(deleted_ids)
    gone = set(deleted)
    changed = [i for i in _unique_sorted(ids) if i not in gone]
    out: list[ChangeSet] = []
    current = ChangeSet()
    for activity_id in changed:
        if len(current) >= limit:
            out.append(current)
            current = ChangeSet()
        current.ids.append(activity_id)
    for activity_id in deleted:
        if len(current) >= limit:
            out.append(current)
            current = ChangeSet()
        current.deleted_ids.append(activity_id)
    if len(current):
        out.append(current)
    return out


__all__ = ["MAX_IDS_PER_EVENT", "ChangeSet", "split_changes"]
