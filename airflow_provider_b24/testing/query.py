"""``crm.activity.list`` semantics: filter operators, order, select and 50-row pages over the store.

ID filters never scan: ``ID``/``@ID`` use the dict index, ``>ID``/``>=ID``/``<ID``/``<=ID`` bisect the
sorted ID list. Datetime comparisons compare instants (any offset in the value; naive = portal
time). Any other filter is a scan in the requested order, stopping after one page when ``start=-1``.
Unknown filter fields, and filters on object fields, are ignored (documented divergence).
"""

from __future__ import annotations

import bisect
import json
import operator
import re
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
from airflow_provider_b24.testing.store import ActivityStore, Row
from airflow_provider_b24.testing.timeutil import parse_datetime

__all__ = ["PAGE_SIZE", "ListPage", "QueryError", "render_row", "resolve_select", "run_list"]

PAGE_SIZE: Final[int] = 50
_OPERATORS: Final[tuple[str, ...]] = (
    "!%=",
    "!@",
    "!%",
    "!=",
    ">=",
    "<=",
    "=%",
    "%=",
    "@",
    "%",
    ">",
    "<",
    "=",
    "!",
)
_FIELD_RE = re.compile(r"^[A-Z0-9_]+$")

Predicate = Callable[[int, Row, dict[str, float | None]], int]


class QueryError(Exception):
    """A list request the portal would refuse (400 with empty ``error``)."""


@dataclass
class ListPage:
    """One page of results plus the envelope's pagination fields."""

    rows: list[tuple[Row, Row]]  # (select-* part, on-request part) of each row
    total: int
    next: int | None


def split_operator(key: str) -> tuple[str, str]:
    """``">=LAST_UPDATED"`` → ``(">=", "LAST_UPDATED")``; no operator → ``("=", key)``."""
    for op in _OPERATORS:
        if key.startswith(op):
            return op, key[len(op) :].strip().upper()
    return "=", key.strip().upper()


def _values(value: Any) -> list[Any]:
    if isinstance(value, Mapping):
        return list(value.values())
    if isinstance(value, list | tuple | set):
        return list(value)
    return [value]


def _int(value: Any) -> int | None:
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return None


def _like(pattern: str, explicit: bool) -> re.Pattern[str]:
    if not explicit:
        return re.compile(re.escape(pattern), re.IGNORECASE | re.DOTALL)
    parts = [re.escape(p) for p in pattern.split("%")]
    return re.compile("^" + ".*".join(p.replace("_", ".") for p in parts) + "$", re.IGNORECASE | re.DOTALL)


def _compare(op: str, left: Any, right: Any) -> bool:
    if op == ">":
        return bool(left > right)
    if op == ">=":
        return bool(left >= right)
    if op == "<":
        return bool(left < right)
    return bool(left <= right)


def _field_predicate(op: str, field: str, value: Any, store: ActivityStore) -> Predicate | None:
    """Compile one filter entry into ``(id, row, times) -> 0/1``."""
    spec = ACTIVITY_FIELDS.get(field)
    if spec is None or spec.type in (
        "object",
        "diskfile",
        "crm_activity_communication",
        "crm_activity_binding",
    ):
        return None
    negate = op in ("!", "!=", "!@", "!%", "!%=")
    base = {"!": "=", "!=": "=", "!@": "@", "!%": "%", "!%=": "%="}.get(op, op)

    getter, convert = _accessors(field, spec.type, store)

    if base in ("=%", "%=", "%"):
        patterns = [_like(str(v), base != "%") for v in _values(value) if v not in (None, "")]

        def like(i: int, r: Row, ts: dict[str, float | None]) -> int:
            text = r.get(field)
            hit = text is not None and any(p.search(str(text)) for p in patterns)
            return int(hit != negate)

        return like
    if base == "@":
        wanted = {convert(v) for v in _values(value)}
        wanted.discard(None)

        def member(i: int, r: Row, ts: dict[str, float | None]) -> int:
            return int((getter(i, r, ts) in wanted) != negate)

        return member
    raw = _values(value)
    if base == "=":
        if len(raw) > 1 or isinstance(value, list | tuple | Mapping):  # "=" with an array means IN
            wanted_any = {convert(v) for v in raw}

            def member_eq(i: int, r: Row, ts: dict[str, float | None]) -> int:
                return int((getter(i, r, ts) in wanted_any) != negate)

            return member_eq
        target = None if raw[0] in (None, "") else convert(raw[0])

        def equal(i: int, r: Row, ts: dict[str, float | None]) -> int:
            current = getter(i, r, ts)
            hit = current in (None, "") if target is None else current == target
            return int(hit != negate)

        return equal
    bound = convert(raw[0]) if raw else None

    def compare(i: int, r: Row, ts: dict[str, float | None]) -> int:
        current = getter(i, r, ts)
        if current is None or bound is None:
            return 0
        return int(_compare(base, current, bound))

    return compare


def _accessors(
    field: str, field_type: str, store: ActivityStore
) -> tuple[Callable[[int, Row, dict[str, float | None]], Any], Callable[[Any], Any]]:
    """(value of the field in a row, converter of a filter value) for typed comparisons."""
    tz = store.tz
    if field in ON_REQUEST_KEYS:  # stored apart from the select-* part

        def text_extra(v: Any) -> Any:
            return None if v is None else str(v).casefold()

        return (lambda i, _r, _ts: text_extra(store.on_request(i).get(field))), text_extra
    if field in DATETIME_FIELDS:
        return (lambda _i, _r, ts: ts.get(field)), (lambda v: parse_datetime(v, tz))
    if field in INTEGER_FIELDS or field_type == "double":
        caster: Callable[[Any], Any] = _int if field in INTEGER_FIELDS else _float
        return (lambda _i, r, _ts: caster(r.get(field))), caster

    def text(v: Any) -> Any:
        if isinstance(v, bool):
            v = "Y" if v else "N"
        return None if v is None else str(v).casefold()

    return (lambda _i, r, _ts: text(r.get(field))), text


def _float(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _bindings_predicate(value: Any, store: ActivityStore) -> Predicate:
    pairs: list[tuple[str | None, str | None]] = []
    for item in _values(value):
        if isinstance(item, Mapping):
            owner_type = item.get("OWNER_TYPE_ID", item.get("owner_type_id"))
            owner_id = item.get("OWNER_ID", item.get("owner_id"))
            pairs.append(
                (None if owner_type in (None, "") else str(_int(owner_type)),
                 None if owner_id in (None, "") else str(_int(owner_id)))
            )  # fmt: skip

    def matches(_i: int, r: Row, _ts: dict[str, float | None]) -> int:
        count = 0
        for owner_type, owner_id in pairs:
            for binding in store.on_request(_i).get("BINDINGS") or ():
                if (owner_type is None or binding["OWNER_TYPE_ID"] == owner_type) and (
                    owner_id is None or binding["OWNER_ID"] == owner_id
                ):
                    count += 1  # one row per matching pair: the portal repeats rows
                    break
        return count

    return matches


@dataclass
class _Plan:
    candidates: Iterable[int] | None  # None = all, in the requested order
    predicates: list[Predicate]
    id_sorted: bool  # candidates are ascending IDs


def _plan(store: ActivityStore, filt: Mapping[str, Any]) -> _Plan:
    predicates: list[Predicate] = []
    candidate_set: set[int] | None = None
    low, high = None, None  # ID bounds: low inclusive, high exclusive positions
    sorted_ids = store.sorted_ids()
    for raw_key, value in filt.items():
        op, field = split_operator(str(raw_key))
        if field == "BINDINGS":
            predicates.append(_bindings_predicate(value, store))
            continue
        if field == "ID" and op in ("=", "@"):
            ids = {i for i in (_int(v) for v in _values(value)) if i is not None}
            candidate_set = ids if candidate_set is None else candidate_set & ids
            continue
        if field == "ID" and op in (">", ">=", "<", "<="):
            bound = _int(value)
            if bound is None:
                candidate_set = set()
                continue
            if op == ">":
                pos = bisect.bisect_right(sorted_ids, bound)
                low = pos if low is None else max(low, pos)
            elif op == ">=":
                pos = bisect.bisect_left(sorted_ids, bound)
                low = pos if low is None else max(low, pos)
            elif op == "<":
                pos = bisect.bisect_left(sorted_ids, bound)
                high = pos if high is None else min(high, pos)
            else:
                pos = bisect.bisect_right(sorted_ids, bound)
                high = pos if high is None else min(high, pos)
            continue
        if not _FIELD_RE.match(field):
            continue
        predicate = _field_predicate(op, field, value, store)
        if predicate is not None:
            predicates.append(predicate)
    if candidate_set is not None:
        chosen = sorted(i for i in candidate_set if i in store)
        if low is not None or high is not None:
            lo = low or 0
            hi = len(sorted_ids) if high is None else high
            if lo >= hi:
                chosen = []
            else:
                lo_id, hi_id = sorted_ids[lo], sorted_ids[hi - 1]
                chosen = [i for i in chosen if lo_id <= i <= hi_id]
        return _Plan(chosen, predicates, True)
    if low is not None or high is not None:
        return _Plan(sorted_ids[low or 0 : high if high is not None else len(sorted_ids)], predicates, True)
    return _Plan(None, predicates, True)


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
            v = _float((rows.row(i) or {}).get(field))
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
    plan = _plan(store, filt)
    if plan.candidates is None:
        return _caches(store)[0].get(store, order), plan.predicates
    return _sort_ids(store, list(plan.candidates), order), plan.predicates


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
    start_int = _int(start) if start not in (None, "") else 0
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
    names = [str(s).strip().upper() for s in _values(select) if s not in (None, "")] if select else []
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
