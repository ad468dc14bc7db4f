"""``crm.activity.list`` filters: operator keys compiled to predicates, ID filters to index plans.

ID filters never scan: ``ID``/``@ID`` use the dict index, ``>ID``/``>=ID``/``<ID``/``<=ID`` bisect the
sorted ID list. Datetime comparisons compare instants (any offset in the value; naive = portal
time). Strings compare case-insensitively (MySQL collation). Unknown filter fields, and filters on
object fields, are ignored (documented).
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from airflow_provider_b24.testing.fields import (
    ACTIVITY_FIELDS,
    DATETIME_FIELDS,
    INTEGER_FIELDS,
    ON_REQUEST_KEYS,
)
from airflow_provider_b24.testing.store import ActivityStore, Row
from airflow_provider_b24.testing.timeutil import parse_datetime

__all__ = ["Plan", "Predicate", "plan", "split_operator", "to_float", "to_int", "values_of"]

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


def split_operator(key: str) -> tuple[str, str]:
    """``">=LAST_UPDATED"`` → ``(">=", "LAST_UPDATED")``; no operator → ``("=", key)``."""
    for op in _OPERATORS:
        if key.startswith(op):
            return op, key[len(op) :].strip().upper()
    return "=", key.strip().upper()


def values_of(value: Any) -> list[Any]:
    if isinstance(value, Mapping):
        return list(value.values())
    if isinstance(value, list | tuple | set):
        return list(value)
    return [value]


def to_int(value: Any) -> int | None:
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
        patterns = [_like(str(v), base != "%") for v in values_of(value) if v not in (None, "")]

        def like(i: int, r: Row, ts: dict[str, float | None]) -> int:
            text = r.get(field)
            hit = text is not None and any(p.search(str(text)) for p in patterns)
            return int(hit != negate)

        return like
    if base == "@":
        wanted = {convert(v) for v in values_of(value)}
        wanted.discard(None)

        def member(i: int, r: Row, ts: dict[str, float | None]) -> int:
            return int((getter(i, r, ts) in wanted) != negate)

        return member
    raw = values_of(value)
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
        caster: Callable[[Any], Any] = to_int if field in INTEGER_FIELDS else to_float
        return (lambda _i, r, _ts: caster(r.get(field))), caster

    def text(v: Any) -> Any:
        if isinstance(v, bool):
            v = "Y" if v else "N"
        return None if v is None else str(v).casefold()

    return (lambda _i, r, _ts: text(r.get(field))), text


def to_float(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _bindings_predicate(value: Any, store: ActivityStore) -> Predicate:
    pairs: list[tuple[str | None, str | None]] = []
    for item in values_of(value):
        if isinstance(item, Mapping):
            owner_type = item.get("OWNER_TYPE_ID", item.get("owner_type_id"))
            owner_id = item.get("OWNER_ID", item.get("owner_id"))
            pairs.append(
                (None if owner_type in (None, "") else str(to_int(owner_type)),
                 None if owner_id in (None, "") else str(to_int(owner_id)))
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
class Plan:
    candidates: Iterable[int] | None  # None = all, in the requested order
    predicates: list[Predicate]
    id_sorted: bool  # candidates are ascending IDs


def plan(store: ActivityStore, filt: Mapping[str, Any]) -> Plan:
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
            ids = {i for i in (to_int(v) for v in values_of(value)) if i is not None}
            candidate_set = ids if candidate_set is None else candidate_set & ids
            continue
        if field == "ID" and op in (">", ">=", "<", "<="):
            bound = to_int(value)
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
        return Plan(chosen, predicates, True)
    if low is not None or high is not None:
        return Plan(sorted_ids[low or 0 : high if high is not None else len(sorted_ids)], predicates, True)
    return Plan(None, predicates, True)
