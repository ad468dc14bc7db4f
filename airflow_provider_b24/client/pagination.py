"""List pagination: every row of a ``*.list`` method exactly once, lazily.

Two strategies (a list page is always 50 rows; ``start``/``next`` offsets as documented in
https://apidocs.bitrix24.com/settings/how-to-call-rest-api/list-methods-pecularities.html):

**Keyset ("fast")** - used automatically for the legacy CRM lists when the caller did not ask for
another order or a ``start``: ``order {"ID": "ASC"}``, ``filter {">ID": cursor}``, ``start=-1`` (no
``COUNT``). The first page is one plain call (cheap for small results, e.g. sensors); then up to 50
pages are chained in one batch, page *n* filtering ``>ID`` on ``$result[p{n-1}][49][ID]`` - 2,500 rows
per HTTP request. Robustness:

* a short page ends the export; chained commands after it are ignored (their ``$result`` reference
  points at a missing row, which Bitrix substitutes with an empty value - such a command could return
  rows from the very beginning);
* only rows with an ID above the cursor are yielded, so duplicates (``BINDINGS`` filters join one
  activity to several owners) and any rows from a bad substitution are dropped;
* a full page that brings no new row means a reference went wrong: the chain restarts from the
  client's own cursor, so the worst case is slower, never wrong.

**Offset** - everything else (another ``order``, a user ``start``, unknown methods): the first page
gives ``total``; the remaining ``start`` offsets are fetched 50 per batch. For legacy CRM lists an
``ID ASC`` tie-breaker is appended to the caller's order so pages are stable. Rows are de-duplicated
by ID (rows shift between pages if data changes during the export; a row can then still be missed -
use keyset ordering for exports that must be complete).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from airflow_provider_b24.client.encoding import ResultRef
from airflow_provider_b24.client.errors import Bitrix24ArgumentError, Bitrix24ConfigError, Bitrix24ServerError

if TYPE_CHECKING:
    from airflow_provider_b24.client.batch import BatchResult

PAGE_SIZE = 50

#: Legacy CRM list methods that accept ``order {"ID": "ASC"}`` and a ``>ID`` filter, with UPPERCASE ``ID``.
KEYSET_METHODS = frozenset(
    {
        "crm.activity.list",
        "crm.deal.list",
        "crm.lead.list",
        "crm.contact.list",
        "crm.company.list",
        "crm.quote.list",
        "crm.requisite.list",
        "crm.timeline.comment.list",
    }
)

EnvelopeFn = Callable[[str, Mapping[str, Any]], Mapping[str, Any]]
BatchFn = Callable[[Mapping[str, Any]], "BatchResult"]


def rows_of(result: Any) -> list[Any]:
    """The rows of a list result: a list, a single-key wrapper (``{"items": [...]}``), or keyed rows."""
    if result is None:
        # A list method always answers with rows (possibly none: `[]`); a missing/null result is a
        # broken answer, and reading it as "no more rows" would end an export early without a word.
        raise Bitrix24ServerError("a list method answered without a result (null or missing)")
    if isinstance(result, list):
        return result
    if isinstance(result, Mapping):
        if len(result) == 1:
            (only,) = result.values()
            if isinstance(only, list):
                return only
        if all(isinstance(v, Mapping) for v in result.values()):
            return list(result.values())
    return [result]


def _row_id(row: Any) -> int | None:
    if not isinstance(row, Mapping):
        return None
    value = row.get("ID", row.get("id"))
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _order_is_id_asc(order: Any) -> bool:
    if not order:
        return True
    if not isinstance(order, Mapping) or len(order) != 1:
        return False
    ((key, direction),) = order.items()
    return str(key).upper() == "ID" and str(direction).upper() == "ASC"


def _cursor_from_filter(flt: dict[str, Any]) -> int | None:
    """Pop ``>ID`` / ``>=ID`` from the filter and return the keyset cursor (``None``: not numeric)."""
    cursor = 0
    for key in list(flt):
        upper = key.upper()
        if upper not in (">ID", ">=ID"):
            continue
        value = flt[key]
        try:
            number = int(str(value).strip())
        except (TypeError, ValueError):
            return None
        flt.pop(key)
        cursor = max(cursor, number if upper == ">ID" else number - 1)
    return cursor


def keyset_plan(method: str, params: Mapping[str, Any], fast: bool | None) -> dict[str, Any] | None:
    """The keyset base parameters and starting cursor, or ``None`` when offset paging must be used."""
    if fast is False:
        return None
    if fast is None and method.lower() not in KEYSET_METHODS:
        return None
    if "start" in params or not _order_is_id_asc(params.get("order")):
        if fast:
            raise Bitrix24ArgumentError("fast=True needs order {'ID': 'ASC'} (or none) and no start")
        return None
    raw_filter = params.get("filter") or {}
    if not isinstance(raw_filter, Mapping):
        return None
    flt = dict(raw_filter)
    cursor = _cursor_from_filter(flt)
    if cursor is None:
        if fast:
            raise Bitrix24ArgumentError("fast=True needs a numeric >ID filter value")
        return None
    base = {k: v for k, v in params.items() if k not in ("filter", "order", "start")}
    strip_id = False
    select = params.get("select")
    if select:
        names = [str(s) for s in select]
        if "*" not in names and "ID" not in (n.upper() for n in names):
            base["select"] = [*names, "ID"]
            strip_id = True
    base["order"] = {"ID": "ASC"}
    base["start"] = -1
    return {"base": base, "filter": flt, "cursor": cursor, "strip_id": strip_id}


def iter_keyset(
    method: str,
    plan: dict[str, Any],
    *,
    envelope: EnvelopeFn,
    batch: BatchFn,
    pages_per_request: int,
) -> Iterator[Any]:
    """Keyset pagination (see the module docstring). Yields rows lazily."""
    base, flt, cursor, strip_id = plan["base"], plan["filter"], plan["cursor"], plan["strip_id"]

    def page_params(bound: Any) -> dict[str, Any]:
        return {**base, "filter": {**flt, ">ID": bound}}

    progressed = False

    def emit(rows: list[Any]) -> Iterator[Any]:
        nonlocal cursor, progressed
        for raw in rows:
            row = raw
            row_id = _row_id(row)
            if row_id is None:
                raise Bitrix24ConfigError(f"{method} returned a row without ID; keyset paging needs ID")
            if row_id <= cursor:
                continue
            cursor = row_id
            progressed = True
            if strip_id and isinstance(row, dict):
                row = {k: v for k, v in row.items() if k != "ID"}
            yield row

    rows = rows_of(envelope(method, page_params(cursor)).get("result"))
    yield from emit(rows)
    if len(rows) < PAGE_SIZE:
        return
    while True:
        commands = {
            f"p{i}": (method, page_params(cursor if i == 0 else ResultRef(f"p{i - 1}", PAGE_SIZE - 1, "ID")))
            for i in range(pages_per_request)
        }
        outcome = batch(commands)
        for i in range(pages_per_request):
            key = f"p{i}"
            if key in outcome.errors:
                raise outcome.errors[key]
            rows = rows_of(outcome.results.get(key))
            progressed = False
            yield from emit(rows)
            if len(rows) < PAGE_SIZE:
                return
            if not progressed:
                break  # a $result reference went wrong: restart the chain from our own cursor


def iter_offset(
    method: str,
    params: Mapping[str, Any],
    *,
    envelope: EnvelopeFn,
    batch: BatchFn,
    pages_per_request: int,
) -> Iterator[Any]:
    """Offset pagination with ``start``/``next`` (see the module docstring). Yields rows lazily."""
    base = dict(params)
    order = base.get("order")
    if (
        method.lower() in KEYSET_METHODS
        and isinstance(order, Mapping)
        and order
        and "ID" not in (str(k).upper() for k in order)
    ):
        base["order"] = {**order, "ID": "ASC"}
    start_raw = base.pop("start", 0)
    try:
        start = int(start_raw)
    except (TypeError, ValueError):
        raise Bitrix24ArgumentError(f"start must be an integer, got {start_raw!r}") from None
    seen: set[int] = set()

    def emit(rows: list[Any]) -> Iterator[Any]:
        for row in rows:
            row_id = _row_id(row)
            if row_id is not None:
                if row_id in seen:
                    continue
                seen.add(row_id)
            yield row

    first = envelope(method, {**base, "start": start})
    yield from emit(rows_of(first.get("result")))
    next_start = first.get("next")
    total = first.get("total")
    while next_start not in (None, "") and start >= 0:
        next_start = int(next_start)
        try:
            total_n = int(total) if total not in (None, "") else None
        except (TypeError, ValueError):
            total_n = None
        if total_n is not None and total_n > next_start:
            offsets = list(range(next_start, total_n, PAGE_SIZE))[:pages_per_request]
        else:
            offsets = [next_start]
        if len(offsets) == 1:
            env = envelope(method, {**base, "start": offsets[0]})
            yield from emit(rows_of(env.get("result")))
            next_start, total = env.get("next"), env.get("total", total)
            continue
        commands = {f"o{off}": (method, {**base, "start": off}) for off in offsets}
        outcome = batch(commands)
        last_key = f"o{offsets[-1]}"
        for off in offsets:
            key = f"o{off}"
            if key in outcome.errors:
                raise outcome.errors[key]
            yield from emit(rows_of(outcome.results.get(key)))
        next_start = outcome.next.get(last_key)
        total = outcome.totals.get(last_key, total)


__all__ = ["KEYSET_METHODS", "PAGE_SIZE", "iter_keyset", "iter_offset", "keyset_plan", "rows_of"]
