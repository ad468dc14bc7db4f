"""Encoding parsed activities as text: compact JSON that keeps types recoverable, and CSV cells.

:func:`encode_json` writes datetimes as ISO 8601 with offset and ``Decimal`` as an exact JSON number;
:func:`read_jsonl` gets the typed rows back. No Airflow here (layer 2).
"""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Iterator
from datetime import date, datetime
from datetime import time as dt_time
from decimal import Decimal
from enum import Enum
from typing import IO, Any, Final

from airflow_provider_b24.activities.parsing import parse_activity
from airflow_provider_b24.export.target import local_path

__all__ = ["csv_cell", "encode_json", "read_jsonl"]

#: Line breaks ``str.splitlines`` knows that JSON leaves unescaped (the C0 ones are always escaped).
_LINE_BREAKS: Final = re.compile("[\x85\u2028\u2029]")

# ``Decimal`` must come out as a JSON number with its exact digits, which ``json``'s C encoder cannot
# do; ``default`` therefore returns a marker string (a NUL, a per-process random token, the digits,
# a NUL) that is replaced by the bare digits afterwards. A real string cannot produce the marker:
# it would need the random token.
_DECIMAL_TOKEN: Final = uuid.uuid4().hex
_DECIMAL_MARK: Final = re.compile(r'"\\u0000' + _DECIMAL_TOKEN + r':([-+0-9.Ee]+)\\u0000"')


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime | date | dt_time):
        return value.isoformat()
    if isinstance(value, Decimal):
        return f"\x00{_DECIMAL_TOKEN}:{value}\x00" if value.is_finite() else None
    if isinstance(value, set | frozenset):
        return sorted(value, key=str)
    if isinstance(value, Enum):
        return value.value
    return str(value)


_JSON: Final = json.JSONEncoder(
    ensure_ascii=False, separators=(",", ":"), check_circular=False, default=_json_default
)


def encode_json(value: Any) -> str:
    """Compact JSON for a parsed activity (or any value in one).

    Datetimes become ISO 8601 strings with their offset, ``Decimal`` an exact JSON number (no float
    round trip; a non-finite one ``null``), enums their value, ``None`` ``null``; other unknown
    objects their ``str``. U+0085, U+2028 and U+2029 are escaped too, so no line-splitting reader
    (``str.splitlines``) can break a line in two.
    """
    text = _JSON.encode(value) if not isinstance(value, Decimal) else _decimal_text(value)
    if _DECIMAL_TOKEN in text:
        text = _DECIMAL_MARK.sub(r"\1", text)
    if _LINE_BREAKS.search(text):
        text = _LINE_BREAKS.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
    return text


def _decimal_text(value: Decimal) -> str:
    return str(value) if value.is_finite() else "null"


def read_jsonl(source: str | os.PathLike[str] | IO[str]) -> Iterator[dict[str, Any]]:
    """The typed activities of a JSON lines export (a local path, ``file://`` URL or text stream).

    Numbers with a fraction are read as ``Decimal`` and every row goes through
    :func:`~airflow_provider_b24.activities.parse_activity`, so the rows equal what was written.
    """
    if isinstance(source, str | os.PathLike):
        with open(local_path(source), encoding="utf-8") as handle:
            yield from read_jsonl(handle)
        return
    for line in source:
        if line.strip():
            yield parse_activity(json.loads(line, parse_float=Decimal))


def csv_cell(value: Any) -> Any:
    """One CSV cell: ``""`` for ``None``, ``true``/``false``, ISO 8601, exact decimals, JSON for nested."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return value
    if isinstance(value, datetime | date | dt_time):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value) if value.is_finite() else ""
    return encode_json(value)
