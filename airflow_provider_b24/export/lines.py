"""JSON lines straight from the rows the portal sends, byte for byte what the typed path writes.

:func:`activity_lines` turns raw ``crm.activity.list`` rows into the bytes of
``encode_json(parse_activity(row)) + "\\n"`` per row, without building the typed rows: an ISO 8601
datetime in the portal's own shape is already its own encoding once it is known to be valid, ``"7"`` in
an integer field is ``7``, ``"Y"`` is ``true``. The export writes 100,000 rows this way in a fraction of
the time the typed path takes (pendulum objects, ``Decimal`` markers and ``json``'s ``default`` hook).

Anything off the common shapes (a ``double``, a nested list, a non-canonical offset, a value of an
unexpected type) is encoded by the typed path, field by field (:func:`parse_activity` and
:func:`encode_json` of that one field); any error sends the whole row down the typed path, which raises
exactly what it raised before (the field, the value, the activity's ``ID``). msgspec writes strings,
integers, booleans and ``null`` as ``json`` does with ``ensure_ascii=False`` (every code point checked
in the tests); U+0085, U+2028 and U+2029 are escaped afterwards as :func:`encode_json` escapes them.
No Airflow here (layer 2).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Final

import msgspec

from airflow_provider_b24.activities.fields import ACTIVITY_FIELD_TYPES, NO_DEADLINE_FIELDS
from airflow_provider_b24.activities.parsing import parse_activity
from airflow_provider_b24.export.encoding import encode_json

__all__ = ["activity_lines"]

_ENCODER: Final = msgspec.json.Encoder()
_fromisoformat: Final = datetime.fromisoformat

# What the loop does with a field's string value (any other value goes to the typed path).
_TEXT: Final = 0  # a string field, or a field the catalogue does not know: passed through
_INT: Final = 1  # integer, user, crm_enum_*: "123" -> 123
_FLAG: Final = 2  # char: "Y" / "N" -> true / false
_DATETIME: Final = 3  # YYYY-MM-DDThh:mm:ss±hh:mm as it is, once valid
_DEADLINE: Final = 4  # a datetime where 9999-… means "no deadline" (null)
_OBJECT: Final = 5  # object: PHP's empty array [] -> {}
_TYPED: Final = 6  # date, double, nested lists: always the typed path

_EMPTY_OBJECT: Final = msgspec.Raw(b"{}")
_NO_DEADLINE_PREFIX: Final = "9999-"
#: Line breaks ``str.splitlines`` knows that JSON leaves unescaped, as :func:`encode_json` escapes them.
_LINE_BREAKS: Final = (
    (b"\xc2\x85", b"\\u0085"),
    (b"\xe2\x80\xa8", b"\\u2028"),
    (b"\xe2\x80\xa9", b"\\u2029"),
)


def _kind(field: str, type_word: str) -> int:
    if type_word in ("integer", "user") or type_word.startswith("crm_enum_"):
        return _INT
    if type_word == "char":
        return _FLAG
    if type_word == "datetime":
        return _DEADLINE if field in NO_DEADLINE_FIELDS else _DATETIME
    if type_word == "object":
        return _OBJECT
    if type_word == "string":
        return _TEXT
    return _TYPED


_KINDS: Final = {field: _kind(field, word) for field, word in ACTIVITY_FIELD_TYPES.items()}

#: ``"+03:00"`` -> whether a datetime with this suffix encodes as itself (checked once per suffix
#: through the typed path: ``"-00:00"``, for one, comes out as ``"+00:00"``).
_SUFFIXES: dict[str, bool] = {}


def _suffix_is_canonical(suffix: str) -> bool:
    known = _SUFFIXES.get(suffix)
    if known is not None:
        return known
    sample = f"2000-01-02T03:04:05{suffix}"
    try:
        same = encode_json(parse_activity({"CREATED": sample})["CREATED"]) == f'"{sample}"'
    except Exception:  # the typed path refuses it: so does the typed path of every such value
        same = False
    if len(_SUFFIXES) < 256:
        _SUFFIXES[suffix] = same
    return same


def _typed_field(field: str, value: Any) -> msgspec.Raw:
    """One field through the typed path (each field is parsed and encoded on its own there too)."""
    return msgspec.Raw(encode_json(parse_activity({field: value})[field]).encode("utf-8"))


def _typed_row(row: Any) -> bytes:
    """The whole row through the typed path: the reference, and the one that raises its errors."""
    return encode_json(parse_activity(row)).encode("utf-8")


def _line_values(row: dict[str, Any]) -> dict[str, Any]:
    """The row with every value replaced by what encodes to its typed encoding."""
    out: dict[str, Any] = {}
    kind_of = _KINDS.get
    for key, value in row.items():
        if value is None:
            out[key] = None
        elif value.__class__ is str:
            kind = kind_of(key, _TEXT)
            if kind == _TEXT:
                out[key] = value
            elif kind == _INT:
                out[key] = int(value) if value.isdigit() and value.isascii() else _typed_field(key, value)
            elif kind == _DATETIME or kind == _DEADLINE:
                if kind == _DEADLINE and value[:5] == _NO_DEADLINE_PREFIX:
                    out[key] = None
                elif (
                    len(value) == 25
                    and value[4:11:3] == "--T"
                    and value[13:17:3] == "::"
                    and value[11:13] != "24"
                    and _suffix_is_canonical(value[19:])
                ):
                    try:
                        same = _fromisoformat(value[:19]).isoformat() == value[:19]
                    except ValueError:
                        same = False
                    out[key] = value if same else _typed_field(key, value)
                else:
                    out[key] = _typed_field(key, value)
            elif kind == _FLAG and (value == "Y" or value == "N"):
                out[key] = value == "Y"
            else:
                out[key] = _typed_field(key, value)
        elif value.__class__ is list and not value and kind_of(key) == _OBJECT:
            out[key] = _EMPTY_OBJECT
        else:
            out[key] = _typed_field(key, value)
    return out


def activity_lines(rows: Sequence[Mapping[str, Any]]) -> bytes:
    """JSON lines (UTF-8, each ending in ``\\n``) of raw activities as ``crm.activity.list`` sends them.

    The bytes equal ``"".join(encode_json(parse_activity(row)) + "\\n" for row in rows)`` encoded as
    UTF-8, and the errors are the same (:class:`ActivityParseError` naming the activity, the field and
    the value; ``UnicodeEncodeError`` for a lone surrogate).
    """
    items: list[Any] = []
    for row in rows:
        if row.__class__ is not dict:
            items.append(msgspec.Raw(_typed_row(row)))
            continue
        try:
            items.append(_line_values(row))  # type: ignore[arg-type]
        except Exception:
            items.append(msgspec.Raw(_typed_row(row)))  # raises what the typed path raises, or agrees with it
    try:
        blob = _ENCODER.encode_lines(items)
    except Exception:
        # A lone surrogate (msgspec refuses it): the typed path, row by row, raises the same error.
        blob = b"".join(_typed_row(row) + b"\n" for row in rows)
    for raw, escaped in _LINE_BREAKS:
        if raw in blob:
            blob = blob.replace(raw, escaped)
    return blob
