"""Judge a contender's rows against the emulator's store, field by field.

The judge is independent of the provider's own parser: it normalises both sides with the emulator's
field table (``airflow_provider_b24.testing.fields``), so a raw wire row (``"ID": "7"``), a typed row
(``"ID": 7``, pendulum datetimes, ``Decimal``) and a JSON-lines row (ISO strings, numbers) all
compare equal to the stored wire row when, and only when, they carry the same values.

Raw contenders (fast-bitrix24, b24pysdk, the naive loop, our hook) must match the wire **exactly**
(strings stay strings); typed contenders (our operators) must match **semantically**.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from airflow_provider_b24.testing.fields import ACTIVITY_FIELDS, DEFAULT_KEYS

__all__ = [
    "CHECKED_KEYS",
    "RowCheck",
    "check_rows",
    "dump_rows",
    "iter_jsonl",
    "normalise",
]

#: The fields every contender is asked for: what ``crm.activity.get`` (and ``select *``) returns.
CHECKED_KEYS: tuple[str, ...] = DEFAULT_KEYS
_NO_DEADLINE_YEAR = 9999
_MISSING = object()


def _to_datetime(value: Any) -> Any:
    if value is None or value == "":
        return None
    if isinstance(value, dt.datetime):
        parsed = value
    else:
        try:
            parsed = dt.datetime.fromisoformat(str(value))
        except ValueError:
            return ("unparseable", str(value))
    if parsed.year == _NO_DEADLINE_YEAR:  # "no deadline": typed contenders turn it into None
        return None
    if parsed.tzinfo is None:
        return ("naive", parsed.isoformat())
    return parsed.timestamp()


def _to_int(value: Any) -> Any:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return ("bool", value)
    try:
        return int(str(value))
    except ValueError:
        return ("bad-int", str(value))


def _to_bool(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, bool):
        return value
    text = str(value)
    if text in ("Y", "N"):
        return text == "Y"
    return ("bad-char", text)


def _to_decimal(value: Any) -> Any:
    if value is None or value == "":
        return None
    try:
        return Decimal(str(value)).normalize()
    except InvalidOperation:
        return ("bad-double", str(value))


def _to_object(value: Any) -> Any:
    if value in (None, [], {}):  # PHP's empty array: [] on the wire, {} once typed
        return {}
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def normalise(field: str, value: Any) -> Any:
    """A field value → a comparable Python value (the same for wire, typed and JSON forms)."""
    spec = ACTIVITY_FIELDS.get(field)
    kind = spec.type if spec else "string"
    if kind == "datetime":
        return _to_datetime(value)
    if kind in ("integer", "user") or kind.startswith("crm_enum_"):
        return _to_int(value)
    if kind == "char":
        return _to_bool(value)
    if kind == "double":
        return _to_decimal(value)
    if kind == "object":
        return _to_object(value)
    return value


class RowCheck:
    """The verdict on one contender's output: ``rows_ok`` and what went wrong (a few examples)."""

    def __init__(self) -> None:
        self.rows_ok = 0
        self.rows_wrong = 0
        self.rows_missing = 0
        self.rows_unexpected = 0
        self.rows_duplicate = 0
        self.examples: list[str] = []

    def note(self, text: str) -> None:
        if len(self.examples) < 5:
            self.examples.append(text)

    def as_dict(self) -> dict[str, Any]:
        return {
            "rows_ok": self.rows_ok,
            "rows_wrong": self.rows_wrong,
            "rows_missing": self.rows_missing,
            "rows_unexpected": self.rows_unexpected,
            "rows_duplicate": self.rows_duplicate,
            "check_examples": self.examples,
        }


def _row_matches(got: Mapping[str, Any], want: Mapping[str, Any], *, exact: bool) -> str | None:
    """``None`` when ``got`` carries every checked field of ``want`` with the same value."""
    for key in CHECKED_KEYS:
        value = got.get(key, _MISSING)
        if value is _MISSING:
            return f"{key} missing"
        expected = want.get(key)
        if exact:
            if value != expected:
                return f"{key}: {value!r} != {expected!r}"
        elif normalise(key, value) != normalise(key, expected):
            return f"{key}: {value!r} !~ {expected!r}"
    return None


def check_rows(
    rows: Iterable[Mapping[str, Any]],
    expected_ids: Iterable[int],
    lookup: Any,
    *,
    exact: bool,
) -> RowCheck:
    """Compare ``rows`` with the store.

    :param rows: what the contender returned (any order).
    :param expected_ids: the IDs it should have returned.
    :param lookup: ``id -> stored wire row`` (e.g. ``store.get``).
    :param exact: wire rows must be identical; otherwise compare normalised values.
    """
    verdict = RowCheck()
    wanted = set(expected_ids)
    seen: set[int] = set()
    for row in rows:
        if not isinstance(row, Mapping):
            verdict.rows_unexpected += 1
            verdict.note(f"not a row: {str(row)[:80]}")
            continue
        try:
            activity_id = int(str(row.get("ID")))
        except (TypeError, ValueError):
            verdict.rows_unexpected += 1
            verdict.note(f"row without a usable ID: {str(row)[:80]}")
            continue
        if activity_id in seen:
            verdict.rows_duplicate += 1
            continue
        seen.add(activity_id)
        if activity_id not in wanted:
            verdict.rows_unexpected += 1
            verdict.note(f"ID {activity_id} was not asked for")
            continue
        problem = _row_matches(row, lookup(activity_id), exact=exact)
        if problem is None:
            verdict.rows_ok += 1
        else:
            verdict.rows_wrong += 1
            verdict.note(f"ID {activity_id}: {problem}")
    verdict.rows_missing = len(wanted - seen)
    if verdict.rows_missing:
        verdict.note(f"{verdict.rows_missing} IDs missing, e.g. {sorted(wanted - seen)[:5]}")
    return verdict


def _json_default(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return str(value)


def dump_rows(rows: Iterable[Mapping[str, Any]], path: Path) -> int:
    """Write rows as JSON lines (typed values as ISO strings / decimal strings); returns the count."""
    count = 0
    with path.open("w", encoding="utf-8") as out:
        for row in rows:
            out.write(json.dumps(row, ensure_ascii=False, default=_json_default))
            out.write("\n")
            count += 1
    return count


def iter_jsonl(path: Path) -> Iterable[dict[str, Any]]:
    """Read JSON lines back, one row at a time."""
    with path.open(encoding="utf-8") as src:
        for line in src:
            if line.strip():
                yield json.loads(line)
