"""``crm.activity.list`` paging: order, 50-row pages, counts, ``select`` and row rendering.

Filters come from :mod:`~airflow_provider_b24.testing.filters`. Non-ID filters scan in the requested
order and stop after one page when ``start=-1``; counted queries cache their full match list per
store version, so offset paging (``start=50, 100, ...``) does not rescan.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from airflow_provider_b24.testing.fields import (
    ACTIVITY_FIELDS,
    DATETIME_FIELDS,
    DEFAULT_KEYS,
    INTEGER_FIELDS,
    ON_REQUEST_KEYS,
)
from airflow_provider_b24.testing.filters import Predicate, plan, to_float, to_int, values_of
from airflow_provider_b24.testing.store import ActivityStore, Row

__all__ = ["PAGE_SIZE", "ListPage", "QueryError", "render_row", "resolve_select", "run_list"]

PAGE_SIZE: Final[int] = 50


class QueryError(Exception):
    """A list request the portal would refuse (400 with empty ``error``)."""


@dataclass
class ListPage:
    """One page of results plus the envelope's pagination fields."""

    rows: list[tuple[Row, Row]]  # (select-* part, on-request part) of each row
    total: int
    next: int | None


def _sort_key(field: str, store: ActivityStore) -> Callable[[int], Any]:
    rows = store
    if field == "ID":
        return lambda i: i
    if field in DATETIME_FIELDS:

        def key_dt(i: int) -> Any:
            v = rows.times(i).get(field)
            return (0, 0.0) if v is None else (1, v)

        return key_dt
    if field in INTEGER_FIELDS or (
        ACTIVITY_FIELDS.get(field, None) and ACTIVITY_FIELDS[field].type == "double"
    ):

        def key_num(i: int) -> Any:
            v = to_float((rows.row(i) or {}).get(field))
            return (0, 0.0) if v is None else (1, v)

        return key_num

    def key_str(i: int) -> Any:
        v = (rows.on_request(i) if field in ON_REQUEST_KEYS else rows.row(i) or {}).get(field)
        return (0, "") if v is None else (1, str(v).casefold())

    return key_str


def _parse_order(order: Any) -> list[tuple[str, bool]]:
    if not isinstance(order, Mapping) or not order:
        return [("START_TIME", False)]
    out: list[tuple[str, bool]] = []
    for field, direction in order.items():
        name = str(field).upper()
        if name in ACTIVITY_FIELDS:
            out.append((name, str(direction).strip().upper() == "DESC"))
    return out or [("START_TIME", False)]


class _OrderCache:
    """Full-store orderings per (store version, order spec): sorting 100k rows once, not per page."""

    def __init__(self) -> None:
        self.version = -1
        self.orders: dict[tuple[tuple[str, bool], ...], list[int]] = {}

    def get(self, store: ActivityStore, order: list[tuple[str, bool]]) -> list[int]:
        if self.version != store.version:
            self.version = store.version
            self.orders.clear()
        key = tuple(order)
        cached = self.orders.get(key)
        if cached is None:
            cached = _sort_ids(store, list(store.sorted_ids()), order)
            self.orders[key] = cached
        return cached


def _sort_ids(store: ActivityStore, ids: list[int], order: list[tuple[str, bool]]) -> list[int]:
    if order == [("ID", False)]:
        return ids
    if order == [("ID", True)]:
        return ids[::-1]
    for field, desc in reversed(order):
        ids.sort(key=_sort_key(field, store), reverse=desc)
    return ids


def _matches(
    store: ActivityStore, ordered: Iterable[int], predicates: list[Predicate], limit: int | None
) -> list[int]:
    """IDs (repeated for multi-binding matches) passing every predicate, in order; stop at ``limit``."""
    hidden = store.hidden_view()
    out: list[int] = []
    if not predicates:
        for activity_id in ordered:
            if activity_id not in hidden:
                out.append(activity_id)
                if limit is not None and len(out) >= limit:
                    break
        return out
    rows = store.row
    times = store.times
    for activity_id in ordered:
        if activity_id in hidden:
            continue
        row = rows(activity_id)
        if row is None:
            continue
        ts = times(activity_id)
        repeat = 1
        for predicate in predicates:
            repeat *= predicate(activity_id, row, ts)
            if not repeat:
                break
        if repeat:
            out.extend([activity_id] * repeat)
            if limit is not None and len(out) >= limit:
                break
    return out


class _MatchCache:
    """Full match lists of recent (filter, order) queries, valid for one store version.

    Offset paging (``start=0, 50, 100, ...``) re-runs the same query for every page; caching the
    ordered match list makes each later page O(page) instead of a 100k-row scan.
    """

    SIZE = 16

    def __init__(self) -> None:
        self.version = -1
        self.entries: dict[str, list[int]] = {}

    def get(self, store: ActivityStore, key: str) -> list[int] | None:
        if self.version != store.version:
            self.version = store.version
            self.entries.clear()
        return self.entries.get(key)

    def put(self, key: str, ids: list[int]) -> None:
        if len(self.entries) >= self.SIZE:
            self.entries.pop(next(iter(self.entries)))
        self.entries[key] = ids


def _pairs(store: ActivityStore, ids: list[int]) -> list[tuple[Row, Row]]:
    out: list[tuple[Row, Row]] = []
    for activity_id in ids:
        base = store.row(activity_id)
        if base is not None:
            out.append((base, store.on_request(activity_id)))
    return out


def _caches(store: ActivityStore) -> tuple[_OrderCache, _MatchCache]:
    caches = store.order_cache
    if not isinstance(caches, tuple):
        caches = store.order_cache = (_OrderCache(), _MatchCache())
    return caches


def _ordered(
    store: ActivityStore, filt: Mapping[str, Any], order: list[tuple[str, bool]]
) -> tuple[Iterable[int], list[Predicate]]:
    """Candidate IDs in the requested order, and the predicates still to apply."""
    chosen = plan(store, filt)
    if chosen.candidates is None:
        return _caches(store)[0].get(store, order), chosen.predicates
    return _sort_ids(store, list(chosen.candidates), order), chosen.predicates


def run_list(
    store: ActivityStore,
    *,
    filt: Any,
    order: Any,
    start: Any,
) -> ListPage:
    """Evaluate one ``crm.activity.list`` page (lock held inside). Raises QueryError for bad params."""
    if filt in (None, "", []):
        filt = {}
    if order in (None, "", []):
        order = {}
    if not isinstance(filt, Mapping):
        raise QueryError("Parameter 'filter' must be array.")
    if not isinstance(order, Mapping):
        raise QueryError("Parameter 'order' must be array.")
    start_int = to_int(start) if start not in (None, "") else 0
    no_count = start_int == -1
    offset = 0 if start_int is None or start_int < 0 else start_int
    parsed_order = _parse_order(order)
    with store.lock:
        if no_count:
            ordered, predicates = _ordered(store, filt, parsed_order)
            ids = _matches(store, ordered, predicates, PAGE_SIZE)
            return ListPage(_pairs(store, ids), 0, None)
        match_cache = _caches(store)[1]
        key = json.dumps([filt, parsed_order], sort_keys=True, default=str)
        matched = match_cache.get(store, key)
        if matched is None:
            ordered, predicates = _ordered(store, filt, parsed_order)
            matched = _matches(store, ordered, predicates, None)
            match_cache.put(key, matched)
        page_ids = matched[offset : offset + PAGE_SIZE]
        rows = _pairs(store, page_ids)
    total = len(matched)
    nxt = offset + PAGE_SIZE if total > offset + PAGE_SIZE else None
    return ListPage(rows, total, nxt)


def resolve_select(select: Any) -> tuple[str, ...]:
    """``select`` → output keys: ``*``/empty = the default keys; ID always included."""
    names = [str(s).strip().upper() for s in values_of(select) if s not in (None, "")] if select else []
    if not names:
        return DEFAULT_KEYS
    wanted = set(names)
    star = "*" in wanted
    keys = [k for k in DEFAULT_KEYS if star or k in wanted or k == "ID"]
    keys.extend(k for k in ON_REQUEST_KEYS if k in wanted)
    return tuple(keys)


_PLAIN: dict[tuple[str, ...], tuple[tuple[str, ...], Callable[[Row], Any], tuple[str, ...]]] = {}


def render_row(pair: tuple[Row, Row], keys: tuple[str, ...], file_url: Callable[[int, int], str]) -> Row:
    """Project a stored row onto ``keys`` in wire format (FILES get their signed-looking URLs).

    ``select *`` returns the stored dict itself (rows are never mutated in place), which keeps a
    2,500-row batch cheap.
    """
    base, extra = pair
    if keys is DEFAULT_KEYS:
        return base
    cached = _PLAIN.get(keys)
    if cached is None:
        plain = tuple(k for k in keys if k not in ON_REQUEST_KEYS)
        cached = _PLAIN[keys] = (plain, operator.itemgetter(*plain), tuple(k for k in keys if k not in plain))
    plain, getter, requested = cached
    out = dict(zip(plain, getter(base), strict=True)) if len(plain) > 1 else {plain[0]: base[plain[0]]}
    for key in requested:
        if key == "FILES":
            activity_id = int(base["ID"])
            out["FILES"] = [
                {"id": f["id"], "url": file_url(f["id"], activity_id)} for f in extra.get("FILES") or ()
            ]
        elif key == "WEBDAV_ELEMENTS":
            out["WEBDAV_ELEMENTS"] = [
                {"ID": str(f["id"]), "FILE_ID": str(f["id"]), "NAME": f"file{f['id']}.pdf"}
                for f in extra.get("WEBDAV_ELEMENTS") or ()
            ]
        else:
            out[key] = extra.get(key)
    return out
