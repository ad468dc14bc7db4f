"""Activity-ID coercion: the many shapes "some activity IDs" take in a DAG, made a clean ``list[int]``.

An int, a numeric string, a list, a Jinja-rendered list, upstream rows with an ``ID``...: see
:func:`coerce_activity_ids`. Anything else raises :class:`InvalidActivityIds` naming the bad value
and its position, before any request. :func:`format_ids` shortens ID lists for logs and errors.
No Airflow here (layer 2).
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from numbers import Integral
from typing import Any, Final

from airflow_provider_b24.exceptions import Bitrix24ArgumentError

__all__ = [
    "IDS_SHOWN",
    "InvalidActivityIds",
    "coerce_activity_ids",
    "format_ids",
    "parse_rendered",
    "short_repr",
]

#: How many IDs a log line or an error message lists before it says "... and N more".
IDS_SHOWN: Final = 20


def format_ids(ids: Sequence[object], limit: int = IDS_SHOWN) -> str:
    """``"1, 2, 3"``, or the first ``limit`` items followed by ``", ... and N more"`` (logs, errors)."""
    shown = ", ".join(str(i) for i in ids[:limit])
    return f"{shown}, ... and {len(ids) - limit} more" if len(ids) > limit else shown


class InvalidActivityIds(Bitrix24ArgumentError):
    """Something given as activity IDs is not one.

    :ivar value: the offending value (the element, not the whole input).
    :ivar position: its 0-based position in the input list (or in the rendered string), ``None``
        when the input was a single value.
    :ivar reason: what is wrong with it.
    """

    def __init__(self, value: Any, position: int | None, reason: str) -> None:
        self.value = value
        self.position = position
        self.reason = reason
        where = "" if position is None else f" at position {position}"
        super().__init__(f"invalid activity ID {short_repr(value)}{where}: {reason}")


_ACCEPTED = "expected a positive integer, a numeric string, or a row with an 'ID' key"
_DIGITS_RE = re.compile(r"[0-9]+")


def short_repr(value: Any, limit: int = 80) -> str:
    """``repr(value)``, cut to ``limit`` characters (a huge input must not become a huge message)."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def _coerce_one(item: Any, position: int | None, *, in_row: bool = False) -> int:
    """One element: an int, a numeric string, or (unless already inside one) a row with ``ID``/``id``."""
    if isinstance(item, bool):
        raise InvalidActivityIds(item, position, "a boolean is not an activity ID")
    if isinstance(item, Integral):
        number = int(item)
        if number <= 0:
            raise InvalidActivityIds(item, position, "activity IDs are positive integers")
        return number
    if isinstance(item, str):
        text = item.strip()
        if text.startswith("-") and _DIGITS_RE.fullmatch(text[1:]):
            raise InvalidActivityIds(item, position, "activity IDs are positive integers")
        if not _DIGITS_RE.fullmatch(text):
            raise InvalidActivityIds(item, position, _ACCEPTED)
        if int(text) <= 0:
            raise InvalidActivityIds(item, position, "activity IDs are positive integers")
        return int(text)
    if item is None:
        raise InvalidActivityIds(item, position, "None is not an activity ID")
    if isinstance(item, Mapping) and not in_row:
        for key in ("ID", "id"):
            if key in item:
                return _coerce_one(item[key], position, in_row=True)
        raise InvalidActivityIds(item, position, "a row without an 'ID' or 'id' key")
    if isinstance(item, float):
        raise InvalidActivityIds(item, position, "a float is not an activity ID; " + _ACCEPTED)
    if isinstance(item, Iterable) and not isinstance(item, bytes | bytearray):
        raise InvalidActivityIds(item, position, "nested collections are not accepted; " + _ACCEPTED)
    raise InvalidActivityIds(item, position, _ACCEPTED)


def parse_rendered(text: str) -> Any:
    """A rendered collection: JSON first (``[1, 2]``), then a Python literal (``(1, 2)``, ``{'ID': '1'}``).

    :raises ValueError: (plain) saying why the text is not readable; callers raise their own error.
    """
    try:
        return json.loads(text)
    except ValueError:
        pass
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as err:
        raise ValueError(f"not a readable list ({type(err).__name__})") from None


def _parse_literal(text: str) -> Any:
    try:
        return parse_rendered(text)
    except ValueError as err:
        raise InvalidActivityIds(text, None, f"{err}; {_ACCEPTED}") from None


def _elements(value: Any) -> Iterator[tuple[int | None, Any]]:
    """Split the input into ``(position, element)`` pairs without judging the elements yet."""
    if value is None:
        raise InvalidActivityIds(value, None, "got None; pass an empty list for no activities")
    if isinstance(value, bool | Integral | float):
        yield None, value
        return
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return
        if text[0] in "[({":
            parsed = _parse_literal(text)
            if isinstance(parsed, str | bool | Integral | float) or parsed is None:
                raise InvalidActivityIds(value, None, f"not a list; {_ACCEPTED}")
            yield from _elements(parsed)
            return
        if "," in text:
            yield from enumerate(text.split(","))
            return
        yield None, text
        return
    if isinstance(value, Mapping):
        yield None, value
        return
    if isinstance(value, bytes | bytearray) or not isinstance(value, Iterable):
        raise InvalidActivityIds(value, None, f"a {type(value).__name__} is not a list; {_ACCEPTED}")
    # list, tuple, set, generator, Airflow's lazy XCom sequence, ... (any non-string iterable)
    yield from enumerate(value)


def coerce_activity_ids(value: Any) -> list[int]:
    """Turn whatever a DAG hands over as "activity IDs" into a clean ``list[int]``.

    Accepted: an ``int``; a numeric string (``"42"``); a list, tuple, set or any other non-string
    iterable (e.g. Airflow's lazy XCom sequence) of those; a Jinja-rendered list (``"[1, 2, 3]"``,
    ``"(1, 2)"``, ``"1,2,3"``); rows with an ``ID`` or ``id`` key (e.g. activities from an upstream
    task, raw or parsed), alone or in a list. An empty list or an empty string gives ``[]``.

    Duplicates are dropped, keeping the order of first occurrence.

    :raises InvalidActivityIds: (a ``Bitrix24ArgumentError``, so a ``ValueError``) for anything
        else, naming the value and its position: ``"abc"``, ``0``, ``-1``, ``1.5``, ``True``,
        ``None`` (alone or inside a list), nested lists, a row without an ``ID``.
    """
    ids: list[int] = []
    seen: set[int] = set()
    for position, item in _elements(value):
        # A plain positive int (the usual XCom list) needs no checks beyond its sign.
        activity_id = item if item.__class__ is int and item > 0 else _coerce_one(item, position)
        if activity_id not in seen:
            seen.add(activity_id)
            ids.append(activity_id)
    return ids
