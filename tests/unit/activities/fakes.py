"""An in-memory fake of the client's ``batch`` contract (docs/architecture.md), shared by unit tests.

It serves ``crm.activity.list`` (``@ID`` filter, ``select``, rows in the portal's START_TIME order)
and ``crm.activity.get`` (``Not found`` / ``Access denied.`` per ID) the way a portal would, and counts
HTTP requests (≤50 commands each).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from airflow_provider_b24.exceptions import Bitrix24AccessDenied, Bitrix24NotFound

SELECT_ONLY = {"COMMUNICATIONS", "FILES", "BINDINGS", "WEBDAV_ELEMENTS", "STORAGE_ELEMENT_IDS"}


@dataclass
class FakeBatchResult:
    results: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, Exception] = field(default_factory=dict)
    totals: dict[str, int] = field(default_factory=dict)
    next: dict[str, int] = field(default_factory=dict)
    requests: int = 0


def fake_row(activity_id: int) -> dict[str, Any]:
    # START_TIME decreases as the ID grows, so the portal's default order (START_TIME ASC) is the
    # reverse of ID order: results must be put back in input order by the fetcher.
    return {
        "ID": str(activity_id),
        "SUBJECT": f"Activity {activity_id}",
        "START_TIME": f"{2030 - activity_id % 1000:04d}-01-01T00:00:00+03:00",
        "COMPLETED": "N",
        "SETTINGS": [],
        "COMMUNICATIONS": [{"ID": str(activity_id * 10), "TYPE": "PHONE", "VALUE": "+1"}],
    }


class FakeClient:
    """Serves crm.activity.list (@ID filter) and crm.activity.get like a portal would."""

    def __init__(self, ids: range | list[int], *, hidden: set[int] | None = None) -> None:
        self.rows = {i: fake_row(i) for i in ids}
        self.hidden = hidden or set()
        self.batches: list[dict[str, tuple[str, Mapping[str, Any]]]] = []
        self.requests = 0
        self.command_errors: dict[str, Exception] = {}
        self.stats = SimpleNamespace(limiter_wait_s=0.0)
        self.closed = False

    def close(self) -> None:
        self.closed = True

    def _visible(self, activity_id: int) -> bool:
        return activity_id in self.rows and activity_id not in self.hidden

    def _select(self, row: dict[str, Any], select: list[str]) -> dict[str, Any]:
        if "*" in select:
            return {k: v for k, v in row.items() if k not in SELECT_ONLY or k in select}
        return {k: v for k, v in row.items() if k in select}

    def batch(self, commands: Mapping[str, tuple[str, Mapping[str, Any]]], *, halt: bool = False) -> Any:
        self.batches.append(dict(commands))
        used = max(1, math.ceil(len(commands) / 50))
        self.requests += used
        self.stats.limiter_wait_s += 0.5 * used
        out = FakeBatchResult(requests=used)
        for key, (method, params) in commands.items():
            if key in self.command_errors:
                out.errors[key] = self.command_errors[key]
            elif method == "crm.activity.list":
                wanted = params["filter"]["@ID"]
                rows = [self._select(self.rows[i], params["select"]) for i in wanted if self._visible(i)]
                rows.sort(key=lambda r: self.rows[int(r["ID"])]["START_TIME"])
                out.results[key] = rows[:50]
            elif method == "crm.activity.get":
                activity_id = params["id"]
                if activity_id in self.hidden:
                    out.errors[key] = Bitrix24AccessDenied("Access denied.", method=method)
                elif activity_id not in self.rows:
                    out.errors[key] = Bitrix24NotFound("Not found", method=method)
                else:
                    out.results[key] = self._select(self.rows[activity_id], ["*"])
            else:  # pragma: no cover
                raise AssertionError(method)
        return out
