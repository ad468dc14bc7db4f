"""Incremental activity export: one ``LAST_UPDATED`` window, streamed to a file with flat memory.

Layer 2 of the provider (see ``docs/architecture.md``): no Airflow imports, so the operator, plain
scripts and the memory benchmark share one implementation. The pieces, each usable alone:

* :func:`export_window` turns ``updated_from``/``updated_to`` (aware datetimes or ISO strings, with
  ``T`` or a space, as Jinja renders ``{{ data_interval_start }}``) into an :class:`ExportWindow`
  whose filter carries an explicit UTC offset: ``>=LAST_UPDATED`` inclusive, ``<LAST_UPDATED``
  exclusive, so consecutive intervals cover every activity exactly once.
* :func:`merge_filter` adds the window to a user filter and refuses keys the export owns
  (``>=LAST_UPDATED``, ``<LAST_UPDATED``, ``>ID``) instead of silently overriding them.
* :func:`iter_window_rows` reads the window with the client's keyset pagination (``order ID ASC``,
  ``>ID``, ``start=-1``, 50 pages chained per batch: 2,500 rows per HTTP request) and drops an
  activity that comes back twice (several bindings): IDs arrive in ascending order, so a duplicate is
  any ID not above the last one written.
* :class:`JsonLinesWriter`, :class:`CsvWriter` and :class:`ParquetWriter` write rows as they
  arrive (the parquet one buffers one row group); :func:`encode_json` keeps types recoverable
  (datetimes as ISO 8601 with offset, ``Decimal`` as an exact JSON number) and :func:`read_jsonl`
  gets the typed rows back.
* :class:`AtomicTarget` writes to a hidden temporary sibling (``.<name>.tmp-<uuid>``) and renames it
  over ``path`` only on success: a failed or killed export never leaves a partial file at ``path``,
  and a re-run replaces the file.
* :func:`export_activities` ties them together and returns an :class:`ExportResult`.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from datetime import time as dt_time
from decimal import Decimal
from enum import Enum
from pathlib import Path, PurePath
from types import TracebackType
from typing import IO, Any, Final, Protocol, cast, runtime_checkable
from urllib.parse import urlsplit
from urllib.request import url2pathname

from airflow_provider_b24.activities import (
    ACTIVITY_FIELD_TYPES,
    SELECT_ONLY_FIELDS,
    InvalidSelect,
    coerce_select,
    parse_activity,
)

__all__ = [
    "FORMATS",
    "LIST_METHOD",
    "STAR_FIELDS",
    "AtomicTarget",
    "CsvWriter",
    "ExportArgumentError",
    "ExportCancelled",
    "ExportResult",
    "ExportWindow",
    "JsonLinesWriter",
    "ParquetWriter",
    "RemotePath",
    "RowWriter",
    "classify_path",
    "csv_header",
    "encode_json",
    "export_activities",
    "export_window",
    "is_local_path",
    "iter_window_rows",
    "local_path",
    "merge_filter",
    "open_writer",
    "parquet_available",
    "parse_bound",
    "read_jsonl",
    "validate_format",
]

log = logging.getLogger(__name__)
_module_log = log

LIST_METHOD: Final = "crm.activity.list"

#: Output formats; ``parquet`` needs ``pyarrow``.
FORMATS: Final = ("jsonl", "csv", "parquet")

#: Fields ``select: ["*"]`` returns for an activity (the documented ``crm.activity.get`` sample),
#: in the field table's order: the CSV/parquet columns when ``select`` is ``None`` or has ``"*"``.
STAR_FIELDS: Final[tuple[str, ...]] = tuple(
    name
    for name in ACTIVITY_FIELD_TYPES
    if name not in SELECT_ONLY_FIELDS and name not in ("IS_INCOMING_CHANNEL", "ORIGIN_VERSION")
)

#: Filter keys the export sets itself: a user filter naming them is a conflict, not a merge.
RESERVED_FILTER_KEYS: Final = frozenset({(">=", "LAST_UPDATED"), ("<", "LAST_UPDATED"), (">", "ID")})

_OPERATOR_CHARS: Final = frozenset("<>=!%@")
_PROGRESS_EVERY: Final = 25_000


class ExportArgumentError(ValueError):
    """An export argument is wrong (window, filter, select, format, path); raised before any request."""


class ExportCancelled(Exception):
    """The export was cancelled (the task was killed); the temporary file has been removed."""


# --------------------------------------------------------------------------------------------------
# Window and filter
# --------------------------------------------------------------------------------------------------


def parse_bound(value: Any, name: str) -> datetime:
    """An aware datetime from a datetime or an ISO 8601 string; naive or unreadable values raise.

    Accepts ``2024-01-01T00:00:00+00:00``, ``2024-01-01 00:00:00+00:00`` (how Jinja renders
    ``{{ data_interval_start }}``), ``Z`` and fractions. A value without a UTC offset is refused: the
    portal would read it in its own time zone and shift the window by hours.

    :param value: the bound as given (after template rendering).
    :param name: the argument's name, for the error message.
    :raises ExportArgumentError: naming the argument and the value.
    """
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        text = value.strip()
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            raise ExportArgumentError(
                f"{name}={value!r} is not an ISO 8601 datetime; expected e.g. '2024-01-01T00:00:00+00:00'"
            ) from None
        if len(text) <= 10:  # a bare date such as '2024-01-01'
            raise ExportArgumentError(f"{name}={value!r} is a date; give a datetime with a UTC offset")
    else:
        raise ExportArgumentError(
            f"{name} must be an ISO 8601 string or a datetime with a UTC offset, "
            f"got {type(value).__name__} {value!r}"
        )
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise ExportArgumentError(
            f"{name}={value!r} has no UTC offset; give one (e.g. '+00:00') so the window is unambiguous"
        )
    return parsed


def _ceil_second(moment: datetime) -> datetime:
    """The first whole second at or after ``moment`` (UTC)."""
    utc = moment.astimezone(UTC)
    if utc.microsecond:
        utc = utc.replace(microsecond=0) + timedelta(seconds=1)
    return utc


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()


@dataclass(frozen=True)
class ExportWindow:
    """A half-open ``LAST_UPDATED`` window ``[start, end)`` in UTC, on whole seconds.

    ``LAST_UPDATED`` has a resolution of one second, so rounding both bounds *up* to the next whole
    second selects exactly the same activities (for a whole-second ``t``: ``t >= a`` iff
    ``t >= ceil(a)``) while keeping the filter values simple.
    """

    start: datetime
    end: datetime

    @property
    def start_iso(self) -> str:
        """``start`` as ISO 8601 with an explicit ``+00:00`` offset."""
        return _iso(self.start)

    @property
    def end_iso(self) -> str:
        """``end`` as ISO 8601 with an explicit ``+00:00`` offset."""
        return _iso(self.end)

    def filter(self) -> dict[str, str]:
        """The ``crm.activity.list`` filter for this window."""
        return {">=LAST_UPDATED": self.start_iso, "<LAST_UPDATED": self.end_iso}

    def contains(self, moment: datetime) -> bool:
        """True when an activity updated at ``moment`` belongs to this window."""
        return self.start <= moment < self.end


def export_window(updated_from: Any, updated_to: Any) -> ExportWindow:
    """Validate the bounds and build the window (see :func:`parse_bound`).

    :raises ExportArgumentError: for a naive or unreadable bound, or ``updated_from >= updated_to``.
    """
    start = parse_bound(updated_from, "updated_from")
    end = parse_bound(updated_to, "updated_to")
    if start >= end:
        raise ExportArgumentError(
            f"updated_from ({start.isoformat()}) must be before updated_to ({end.isoformat()}); "
            "the window is [updated_from, updated_to)"
        )
    return ExportWindow(start=_ceil_second(start), end=_ceil_second(end))


def _split_filter_key(key: str) -> tuple[str, str]:
    """``'>=last_updated'`` -> ``('>=', 'LAST_UPDATED')`` (operator prefix, upper-cased field)."""
    text = key.strip()
    i = 0
    while i < len(text) and text[i] in _OPERATOR_CHARS:
        i += 1
    return text[:i], text[i:].strip().upper()


def merge_filter(window: ExportWindow, user_filter: Any = None) -> dict[str, Any]:
    """The user's filter plus the window; keys the export owns must not be in the user's filter.

    ``user_filter`` may be a dict or its JSON text (a rendered template). Narrowing conditions on the
    same fields (``>LAST_UPDATED``, ``<=LAST_UPDATED``, ``>=ID``...) are kept: Bitrix24 ANDs filter
    keys. ``>=LAST_UPDATED``/``<LAST_UPDATED`` would replace the window and ``>ID`` would break the
    keyset pagination, so they raise instead.

    :raises ExportArgumentError: for a filter that is not a dict, or a conflicting key.
    """
    if user_filter is None or user_filter == "":
        user: Mapping[str, Any] = {}
    elif isinstance(user_filter, Mapping):
        user = user_filter
    elif isinstance(user_filter, str):
        try:
            loaded = json.loads(user_filter)
        except ValueError:
            raise ExportArgumentError(f"filter={user_filter!r} is not a dict or its JSON text") from None
        if not isinstance(loaded, Mapping):
            raise ExportArgumentError(f"filter={user_filter!r} is not a dict or its JSON text")
        user = loaded
    else:
        raise ExportArgumentError(f"filter must be a dict, got {type(user_filter).__name__} {user_filter!r}")
    merged: dict[str, Any] = {}
    for key, value in user.items():
        if not isinstance(key, str):
            raise ExportArgumentError(f"filter key {key!r} must be a string such as '>=CREATED'")
        operator, field = _split_filter_key(key)
        if (operator, field) in RESERVED_FILTER_KEYS:
            what = "the keyset pagination" if field == "ID" else "the export window"
            raise ExportArgumentError(
                f"filter key {key!r} conflicts with {what}; set the window with updated_from/updated_to "
                "(the export adds '>=LAST_UPDATED', '<LAST_UPDATED' and '>ID' itself)"
            )
        merged[key] = value
    merged.update(window.filter())
    return merged


def normalise_select(select: Any) -> list[str]:
    """``select`` for ``crm.activity.list`` (see :func:`~airflow_provider_b24.activities.coerce_select`).

    ``None`` means ``["*"]``; ``ID`` is always included (the keyset pagination reads it).

    :raises ExportArgumentError: for something that is not a list of field names.
    """
    try:
        return coerce_select(select)
    except InvalidSelect as err:
        raise ExportArgumentError(str(err)) from None


def csv_header(select: Sequence[str]) -> list[str]:
    """The fixed columns for ``select`` (as :func:`normalise_select` returns it).

    ``"*"`` expands to :data:`STAR_FIELDS`; other names follow in the order given.
    """
    header: list[str] = []
    for name in select:
        for column in STAR_FIELDS if name == "*" else (name,):
            if column not in header:
                header.append(column)
    return header


# --------------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------------


@runtime_checkable
class SupportsIterList(Protocol):
    """What the export needs from a client: :class:`~airflow_provider_b24.client.Bitrix24Client` fits."""

    @property
    def stats(self) -> Any: ...

    def iter_list(self, method: str, params: Mapping[str, Any] | None = ...) -> Iterator[dict[str, Any]]: ...


def _requests_so_far(client: Any) -> int:
    stats = getattr(client, "stats", None)
    return int(getattr(stats, "requests", 0) or 0)


def iter_window_rows(
    client: SupportsIterList,
    filter: Mapping[str, Any],
    select: Sequence[str],
    *,
    duplicates: list[int] | None = None,
) -> Iterator[dict[str, Any]]:
    """Raw rows of ``crm.activity.list`` for ``filter``, in ascending ID order, each ID once.

    Uses the client's keyset pagination (``order {"ID": "ASC"}``; the client adds ``>ID`` and
    ``start=-1`` and chains 50 pages per batch). An ID not above the previous one is a duplicate
    (an activity with several bindings can be listed twice) and is skipped; ``duplicates[0]`` counts
    them when a one-element list is passed.
    """
    params = {"filter": dict(filter), "select": list(select), "order": {"ID": "ASC"}}
    last_id = 0
    for row in client.iter_list(LIST_METHOD, params):
        try:
            row_id = int(row["ID"])
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"{LIST_METHOD} returned a row without a numeric ID: {str(row)[:200]}") from None
        if row_id <= last_id:
            if duplicates is not None:
                duplicates[0] += 1
            continue
        last_id = row_id
        yield row


# --------------------------------------------------------------------------------------------------
# Encoding
# --------------------------------------------------------------------------------------------------

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


def _csv_cell(value: Any) -> Any:
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


# --------------------------------------------------------------------------------------------------
# Writers
# --------------------------------------------------------------------------------------------------


class RowWriter(Protocol):
    """Writes parsed activities to a binary stream it does not own.

    :meth:`close` flushes everything (the stream stays open: :class:`AtomicTarget` closes it);
    :meth:`discard` drops what is buffered after a failure, without writing anything more.
    """

    def write(self, row: Mapping[str, Any]) -> None: ...

    def close(self) -> None: ...

    def discard(self) -> None: ...


class _Unclosable(io.RawIOBase):
    """A writable view of a binary stream that never closes it and can be cut off (:meth:`kill`)."""

    def __init__(self, stream: IO[bytes]) -> None:
        super().__init__()
        self._stream = stream
        self._dead = False

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        if not self._dead:
            self._stream.write(bytes(data))
        return len(data)

    def kill(self) -> None:
        """Drop every later write (a failed export's buffers must not reach the closed stream)."""
        self._dead = True


class _TextWriter:
    def __init__(self, stream: IO[bytes]) -> None:
        self._sink = _Unclosable(stream)
        self._text = io.TextIOWrapper(
            io.BufferedWriter(self._sink, buffer_size=1 << 16), encoding="utf-8", newline=""
        )

    def close(self) -> None:
        self._text.close()  # flushes into the stream, closes only the wrappers

    def discard(self) -> None:
        self._sink.kill()
        self._text.close()


class JsonLinesWriter(_TextWriter):
    """One activity per line, UTF-8, ``\\n`` line ends (see :func:`encode_json`)."""

    def write(self, row: Mapping[str, Any]) -> None:
        self._text.write(encode_json(row))
        self._text.write("\n")


class CsvWriter(_TextWriter):
    """RFC 4180 CSV with a fixed header; nested values (lists, objects) as JSON text.

    Booleans are ``true``/``false``, datetimes ISO 8601 with offset, ``None`` an empty cell (so an
    empty string and ``None`` look alike). Keys that are not in ``header`` are left out (logged once).
    """

    def __init__(self, stream: IO[bytes], header: Sequence[str]) -> None:
        super().__init__(stream)
        self.header = list(header)
        self._known = frozenset(self.header)
        self._warned = False
        self._csv = csv.writer(self._text)
        self._csv.writerow(self.header)

    def write(self, row: Mapping[str, Any]) -> None:
        if not self._warned and not self._known.issuperset(row):
            self._warned = True
            extra = sorted(set(row) - self._known)
            log.warning("CSV export: fields %s are not in the header and are left out", extra)
        self._csv.writerow([_csv_cell(row.get(name)) for name in self.header])


def parquet_available() -> bool:
    """True when ``pyarrow`` can be imported."""
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        return False
    return True


_PARQUET_ROW_GROUP: Final = 10_000


class ParquetWriter:
    """Parquet with one column per header field, written in row groups of 10,000 rows.

    Column types follow the field table: integers, users and enumerations ``int64``; Y/N flags
    ``bool``; datetimes ``timestamp[us, UTC]`` (an instant; the portal's offset is not kept); money
    and other ``double`` fields ``decimal128(38, 9)``; strings, unknown and nested fields ``string``
    (nested ones as JSON text). Memory is bounded by one row group.
    """

    def __init__(self, stream: IO[bytes], header: Sequence[str]) -> None:
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError as err:  # pragma: no cover - checked by validate_format first
            raise ExportArgumentError(_PARQUET_MISSING) from err
        self._pa = pa
        self.header = list(header)
        self._kinds = [self._kind(name) for name in self.header]
        types = {"int": pa.int64(), "bool": pa.bool_(), "ts": pa.timestamp("us", tz="UTC"),
                 "dec": pa.decimal128(38, 9), "str": pa.string()}  # fmt: skip
        self._schema = pa.schema(
            [pa.field(n, types[k]) for n, k in zip(self.header, self._kinds, strict=True)]
        )
        self._columns: list[list[Any]] = [[] for _ in self.header]
        self._sink = _Unclosable(stream)
        self._writer = pq.ParquetWriter(self._sink, self._schema)

    @staticmethod
    def _kind(name: str) -> str:
        type_word = ACTIVITY_FIELD_TYPES.get(name, "string")
        if type_word in ("integer", "user") or type_word.startswith("crm_enum_"):
            return "int"
        return {"char": "bool", "datetime": "ts", "double": "dec"}.get(type_word, "str")

    def _cell(self, kind: str, value: Any) -> Any:
        if value is None or value == "":
            return None
        if kind == "str":
            return value if isinstance(value, str) else encode_json(value)
        if kind == "dec" and isinstance(value, Decimal):
            return value.quantize(Decimal("1e-9"))
        return value

    def write(self, row: Mapping[str, Any]) -> None:
        for column, name, kind in zip(self._columns, self.header, self._kinds, strict=True):
            column.append(self._cell(kind, row.get(name)))
        if len(self._columns[0]) >= _PARQUET_ROW_GROUP:
            self._flush()

    def _flush(self) -> None:
        if self._columns and self._columns[0]:
            table = self._pa.Table.from_arrays(
                [
                    self._pa.array(col, type=f.type)
                    for col, f in zip(self._columns, self._schema, strict=True)
                ],
                schema=self._schema,
            )
            self._writer.write_table(table)
            self._columns = [[] for _ in self.header]

    def close(self) -> None:
        self._flush()
        self._writer.close()

    def discard(self) -> None:
        self._sink.kill()
        self._columns = [[] for _ in self.header]
        self._writer.close()


_PARQUET_MISSING = (
    "format='parquet' needs the 'pyarrow' package, which is not installed; "
    "install it (pip install pyarrow) or use format='jsonl' or 'csv'"
)


def validate_format(fmt: Any, *, check_dependencies: bool = True) -> str:
    """Return the format name, or raise naming the allowed ones (or the missing package).

    :raises ExportArgumentError: for an unknown format, or ``parquet`` without ``pyarrow`` when
        ``check_dependencies`` is true.
    """
    if not isinstance(fmt, str) or fmt.strip().lower() not in FORMATS:
        raise ExportArgumentError(
            f"format={fmt!r} is not supported; use one of {', '.join(map(repr, FORMATS))}"
        )
    name = fmt.strip().lower()
    if name == "parquet" and check_dependencies and not parquet_available():
        raise ExportArgumentError(_PARQUET_MISSING)
    return name


def open_writer(fmt: str, stream: IO[bytes], select: Sequence[str]) -> RowWriter:
    """The writer for ``fmt`` over ``stream`` (columns from ``select`` for CSV and parquet)."""
    name = validate_format(fmt)
    if name == "jsonl":
        return JsonLinesWriter(stream)
    if name == "csv":
        return CsvWriter(stream, csv_header(select))
    return ParquetWriter(stream, csv_header(select))


# --------------------------------------------------------------------------------------------------
# Atomic target
# --------------------------------------------------------------------------------------------------


@runtime_checkable
class RemotePath(Protocol):
    """The part of ``airflow.sdk.ObjectStoragePath`` (a ``UPath``) the export uses."""

    @property
    def name(self) -> str: ...

    def with_name(self, name: str) -> Any: ...

    def open(self, mode: str = ...) -> Any: ...

    def rename(self, target: Any) -> Any: ...

    def unlink(self, missing_ok: bool = ...) -> None: ...


_LOCAL_PROTOCOLS: Final = frozenset({"", "file", "local"})


def is_local_path(path: str | os.PathLike[str] | RemotePath) -> bool:
    """True for a plain path or a ``file://`` URL (written with plain Python I/O)."""
    protocol = getattr(path, "protocol", None)
    if isinstance(protocol, str):  # an ObjectStoragePath (see classify_path)
        return protocol in _LOCAL_PROTOCOLS
    if isinstance(path, PurePath):
        return True
    scheme = urlsplit(os.fspath(cast("str | os.PathLike[str]", path))).scheme
    return scheme in ("", "file") or len(scheme) == 1  # 'C:\\...' parses as scheme 'c'


def local_path(path: str | os.PathLike[str] | RemotePath) -> Path:
    """The filesystem path of a plain path or a ``file://`` URL.

    :raises ExportArgumentError: for another scheme, or a ``file://`` URL naming a remote host.
    """
    protocol = getattr(path, "protocol", None)
    if isinstance(protocol, str):  # an ObjectStoragePath (see classify_path)
        if protocol not in _LOCAL_PROTOCOLS:
            raise ExportArgumentError(f"path={path!r} is not a local path or file:// URL")
        return Path(str(getattr(path, "path", "")))
    if isinstance(path, PurePath):
        return Path(path)
    text = os.fspath(cast("str | os.PathLike[str]", path))
    parts = urlsplit(text)
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise ExportArgumentError(f"path={text!r}: a file:// URL must name a local path (file:///...)")
        return Path(url2pathname(parts.path))
    if not is_local_path(text):
        raise ExportArgumentError(f"path={text!r} is not a local path or file:// URL")
    return Path(text).expanduser()


def classify_path(path: Any) -> tuple[Path | None, RemotePath | None]:
    """``(local_path, None)`` or ``(None, remote_path)`` for a path, URL or ``ObjectStoragePath``.

    An object storage path (a ``UPath``: it has a ``protocol``) is recognised before ``PurePath`` and
    ``os.PathLike``: older ``universal_pathlib`` releases (Airflow 3.1) make every ``UPath`` a
    ``pathlib.Path`` whose ``__fspath__`` is the bucket-relative path, which must never be taken
    for a local file.

    :raises ExportArgumentError: for anything else.
    """
    protocol = getattr(path, "protocol", None)
    if isinstance(protocol, str) and isinstance(path, RemotePath):
        return (local_path(path), None) if protocol in _LOCAL_PROTOCOLS else (None, path)
    if isinstance(path, str | os.PathLike):
        return local_path(path), None
    raise ExportArgumentError(
        f"path={path!r} is neither a local path nor an object storage path "
        "(use airflow.sdk.ObjectStoragePath for s3://, gs://... URLs)"
    )


def _temp_name(name: str) -> str:
    return f".{name}.tmp-{uuid.uuid4().hex}"


class AtomicTarget:
    """Write a file under a temporary sibling name and rename it over ``path`` only on success.

    Use as a context manager yielding a binary stream. On success the stream is flushed (and
    fsync-ed, for local files) and renamed over ``path`` (``os.replace``: atomic on one filesystem);
    on any exception, including ``KeyboardInterrupt`` and Airflow's task termination, the temporary
    file is removed and ``path`` keeps what it had. :meth:`abort` does the same from a signal handler.

    Local paths (plain or ``file://``) use plain Python I/O and create missing parent directories.
    Anything else must be a :class:`RemotePath` (``airflow.sdk.ObjectStoragePath``): the temporary
    key is then renamed with the store's move, which is a copy and a delete on object stores (the
    final key still appears only once the copy is complete, but the move is not one atomic step).
    """

    def __init__(self, path: str | os.PathLike[str] | RemotePath) -> None:
        self.path = path
        self._local: Path | None = None
        self._remote: RemotePath | None = None
        self._local, self._remote = classify_path(path)
        if self._local is not None:
            text = os.fspath(path) if isinstance(path, str | PurePath) else str(self._local)
            if not self._local.name or text.endswith(("/", os.sep)) or self._local.is_dir():
                raise ExportArgumentError(f"path={text!r} names a directory, not a file")
            self.temp: Any = self._local.with_name(_temp_name(self._local.name))
        else:
            assert self._remote is not None
            self.temp = self._remote.with_name(_temp_name(self._remote.name))
        self._stream: Any = None
        self.committed = False

    @property
    def final(self) -> Any:
        """Where the file ends up: a ``Path`` for local targets, else the remote path."""
        return self._local if self._local is not None else self._remote

    def __enter__(self) -> IO[bytes]:
        if self._local is not None:
            self._local.parent.mkdir(parents=True, exist_ok=True)
            self._stream = open(self.temp, "xb")
        else:
            self._stream = self.temp.open("wb")
        return self._stream

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            self.abort()
            return
        try:
            self.commit()
        except BaseException:
            self.abort()
            raise

    def commit(self) -> None:
        """Close the stream and move the temporary file over the final path."""
        stream, self._stream = self._stream, None
        if self._local is not None:
            stream.flush()
            os.fsync(stream.fileno())
            stream.close()
            os.replace(self.temp, self._local)
            _fsync_dir(self._local.parent)
        else:
            stream.close()
            self.temp.rename(self._remote)
        self.committed = True

    def abort(self) -> None:
        """Best effort: close the stream and remove the temporary file; never raises."""
        stream, self._stream = self._stream, None
        if stream is not None:
            with contextlib.suppress(Exception):  # best effort; the file is removed next
                stream.close()
        if self.committed:
            return
        try:
            self.temp.unlink(missing_ok=True)
        except Exception as err:
            log.warning("could not remove the temporary file %s: %s", self.temp, err)


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. Windows
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


# --------------------------------------------------------------------------------------------------
# The export
# --------------------------------------------------------------------------------------------------


def _quietly(action: Callable[[], Any]) -> None:
    try:
        action()
    except Exception as err:  # best effort after a failure that is being raised anyway
        log.debug("ignored while cleaning up: %s", err)


@dataclass(frozen=True)
class ExportResult:
    """What an export did.

    :ivar path: where the file was written (as given, a string).
    :ivar rows: activities written.
    :ivar requests: HTTP requests the client sent for it (retries included).
    :ivar updated_from: the window start as sent (ISO 8601, ``+00:00``), inclusive.
    :ivar updated_to: the window end as sent, exclusive.
    :ivar duplicates: rows skipped because their activity was already written.
    :ivar seconds: wall time.
    """

    path: str
    rows: int
    requests: int
    updated_from: str
    updated_to: str
    duplicates: int = 0
    seconds: float = 0.0

    def to_xcom(self) -> dict[str, Any]:
        """The small, JSON-plain dict the operator returns."""
        return {
            "path": self.path,
            "rows": self.rows,
            "requests": self.requests,
            "updated_from": self.updated_from,
            "updated_to": self.updated_to,
        }


def export_activities(
    client: SupportsIterList,
    *,
    updated_from: Any,
    updated_to: Any,
    path: str | os.PathLike[str] | RemotePath,
    format: str = "jsonl",
    filter: Any = None,
    select: Any = None,
    cancel: threading.Event | None = None,
    on_target: Callable[[AtomicTarget], None] | None = None,
    logger: Any = None,
) -> ExportResult:
    """Export the activities whose ``LAST_UPDATED`` is in ``[updated_from, updated_to)`` to ``path``.

    Every argument is validated before the first request. Rows are parsed
    (:func:`~airflow_provider_b24.activities.parse_activity`) and written as they arrive; the file
    appears at ``path`` only when the export is complete (:class:`AtomicTarget`).

    :param client: a :class:`~airflow_provider_b24.client.Bitrix24Client` (or anything with
        ``iter_list`` and ``stats.requests``).
    :param cancel: when set (e.g. by the operator's ``on_kill``), the export stops at the next row
        and raises :class:`ExportCancelled`; nothing is left at ``path`` or beside it.
    :param on_target: called with the :class:`AtomicTarget` before writing starts (so a kill handler
        can abort it).
    :param logger: where progress goes (the operator passes its task logger); default: this module's.
    :raises ExportArgumentError: for a bad window, filter, select, format or path.
    """
    log = logger if logger is not None else _module_log
    window = export_window(updated_from, updated_to)
    name = validate_format(format)
    merged = merge_filter(window, filter)
    fields = normalise_select(select)
    target = AtomicTarget(path)
    if on_target is not None:
        on_target(target)
    shown = path if isinstance(path, str) else str(path)
    log.info(
        "exporting activities with %s <= LAST_UPDATED < %s to %s (%s)",
        window.start_iso,
        window.end_iso,
        shown,
        name,
    )
    started = time.monotonic()
    requests_before = _requests_so_far(client)
    rows = 0
    duplicates = [0]
    with target as stream:
        writer = open_writer(name, stream, fields)
        try:
            for raw in iter_window_rows(client, merged, fields, duplicates=duplicates):
                if cancel is not None and cancel.is_set():
                    raise ExportCancelled(f"export to {shown} cancelled after {rows} rows")
                writer.write(parse_activity(raw))
                rows += 1
                if rows % _PROGRESS_EVERY == 0:
                    log.info(
                        "exported %d activities in %d requests (%.1f s)",
                        rows,
                        _requests_so_far(client) - requests_before,
                        time.monotonic() - started,
                    )
            if cancel is not None and cancel.is_set():
                raise ExportCancelled(f"export to {shown} cancelled after {rows} rows")
        except BaseException:
            _quietly(writer.discard)
            raise
        writer.close()
    result = ExportResult(
        path=shown,
        rows=rows,
        requests=_requests_so_far(client) - requests_before,
        updated_from=window.start_iso,
        updated_to=window.end_iso,
        duplicates=duplicates[0],
        seconds=round(time.monotonic() - started, 3),
    )
    log.info(
        "exported %d activities (%d duplicates skipped) to %s in %d requests, %.1f s",
        result.rows,
        result.duplicates,
        shown,
        result.requests,
        result.seconds,
    )
    return result
