"""A fake of the client's ``iter_list`` + ``stats.requests`` contract for export unit tests.

``FakeListClient`` serves ``crm.activity.list`` rows from memory: it applies the
``>=LAST_UPDATED``/``<LAST_UPDATED`` window (and exact-match filters), keeps ID order, and counts
HTTP requests the way the real client's keyset paging does (one plain first page, then 50 pages
chained per batch; a short page ends it).
"""

from __future__ import annotations

import bisect
import json
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

SAMPLE = json.loads((Path(__file__).resolve().parents[2] / "data" / "crm.activity.get.200.json").read_text())[
    "result"
]

BASE = datetime(2024, 1, 1, tzinfo=UTC)


def wire_row(activity_id: int, last_updated: datetime, **fields: Any) -> dict[str, Any]:
    """The documented sample with another ID and LAST_UPDATED (in the bound's own offset)."""
    row = dict(SAMPLE)
    row["ID"] = str(activity_id)
    row["LAST_UPDATED"] = last_updated.isoformat()
    row.update(fields)
    return row


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text)


class FakeListClient:
    """Serves crm.activity.list from ``rows`` (wire format) with keyset-like request accounting."""

    def __init__(
        self,
        rows: list[dict[str, Any]],
        *,
        fail_after_rows: int | None = None,
    ) -> None:
        self.rows = sorted(rows, key=lambda r: int(r["ID"]))
        self.stats = SimpleNamespace(requests=0)
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.fail_after_rows = fail_after_rows

    def _match(self, row: Mapping[str, Any], flt: Mapping[str, Any]) -> bool:
        for key, value in flt.items():
            if key == ">=LAST_UPDATED":
                if not _instant(row["LAST_UPDATED"]) >= _instant(value):
                    return False
            elif key == "<LAST_UPDATED":
                if not _instant(row["LAST_UPDATED"]) < _instant(value):
                    return False
            elif key.lstrip("<>=!%@") == key and str(row.get(key)) != str(value):
                return False
        return True

    def iter_list(self, method: str, params: Mapping[str, Any] | None = None) -> Iterator[dict[str, Any]]:
        params = dict(params or {})
        self.calls.append((method, params))
        assert method == "crm.activity.list"
        assert params.get("order") == {"ID": "ASC"}
        matching = [r for r in self.rows if self._match(r, params.get("filter", {}))]
        select = params.get("select") or ["*"]
        served = 0
        # First page: one request; then 2,500 rows (50 pages) per request; a short page ends it.
        self.stats.requests += 1
        page_rows = 50
        position = 0
        while True:
            chunk = matching[position : position + page_rows]
            for row in chunk:
                if self.fail_after_rows is not None and served >= self.fail_after_rows:
                    raise ConnectionError("portal went away")
                out = row if "*" in select else {k: v for k, v in row.items() if k in select}
                yield dict(out)
                served += 1
            position += len(chunk)
            if len(chunk) < page_rows:
                return
            self.stats.requests += 1
            page_rows = 2500


def spread_rows(
    count: int, start: datetime = BASE, step: timedelta = timedelta(seconds=7)
) -> list[dict[str, Any]]:
    """``count`` rows with IDs 1..count, LAST_UPDATED every ``step`` from ``start``."""
    return [wire_row(i, start + (i - 1) * step) for i in range(1, count + 1)]


class FakeBatchClient(FakeListClient):
    """``FakeListClient`` with ``batch`` for ``crm.activity.list`` commands: ``>ID`` (a number or a
    ``$result[pN][49][ID]`` reference to an earlier command), ``<=ID``, ``order ID`` ASC or DESC,
    50 rows a page; one request per call, as the parallel export's slices send them."""

    def _window(self, flt: Mapping[str, Any]) -> tuple[list[dict[str, Any]], list[int]]:
        key = repr(sorted(flt.items()))
        cache: dict[str, Any] = self.__dict__.setdefault("_windows", {})
        if key not in cache:
            rows = [r for r in self.rows if self._match(r, flt)]
            cache[key] = (rows, [int(r["ID"]) for r in rows])
        return cache[key]  # type: ignore[no-any-return]

    def batch(self, commands: Mapping[str, tuple[str, Mapping[str, Any]]], *, halt: bool = False) -> Any:
        self.stats.requests += 1
        results: dict[str, Any] = {}
        for key, (method, params) in commands.items():
            assert method == "crm.activity.list"
            flt = dict(params.get("filter", {}))
            after = flt.pop(">ID", None)
            if isinstance(after, str) and after.startswith("$result["):
                ref_key = after[len("$result[") : after.index("]")]
                earlier = results[ref_key]
                after = earlier[49]["ID"] if len(earlier) > 49 else None
                if after is None:
                    results[key] = []
                    continue
            up_to = flt.pop("<=ID", None)
            window, ids = self._window(flt)
            low = 0 if after is None else bisect.bisect_right(ids, int(after))
            high = len(ids) if up_to is None else bisect.bisect_right(ids, int(up_to))
            rows = window[low:high]
            if params.get("order") == {"ID": "DESC"}:
                rows = rows[::-1]
            select = params.get("select") or ["*"]
            results[key] = [
                dict(r) if "*" in select else {k: v for k, v in r.items() if k in select} for r in rows[:50]
            ]
        return SimpleNamespace(results=results, errors={})
