"""Writers: parsed activities to JSON lines, CSV or parquet, as they arrive, with flat memory.

Each writer writes to a binary stream it does not own (:class:`~.target.AtomicTarget` owns it); the
parquet one buffers one row group. Columns for CSV and parquet follow ``select`` (``"*"`` expands to
the catalogue's :data:`~airflow_provider_b24.activities.fields.STAR_FIELDS`). No Airflow here (layer 2).
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import IO, Any, Final, Protocol

from airflow_provider_b24.activities.fields import ACTIVITY_FIELD_TYPES, STAR_FIELDS
from airflow_provider_b24.activities.parsing import parse_activity
from airflow_provider_b24.export.encoding import csv_cell, encode_json
from airflow_provider_b24.export.errors import ExportArgumentError
from airflow_provider_b24.export.lines import activity_lines

__all__ = [
    "FORMATS",
    "CsvWriter",
    "JsonLinesWriter",
    "ParquetWriter",
    "RowWriter",
    "csv_header",
    "open_writer",
    "parquet_available",
    "validate_format",
]

log = logging.getLogger(__name__)

#: Output formats; ``parquet`` needs ``pyarrow``.
FORMATS: Final = ("jsonl", "csv", "parquet")


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


class RowWriter(Protocol):
    """Writes parsed activities to a binary stream it does not own.

    :meth:`write` takes one parsed activity. Pages of activities as the portal sends them are
    written in two steps: :meth:`encode_page` (thread-safe, touches no stream: the export runs it on
    the thread that read the page) and :meth:`write_page` of its result; :meth:`write_raw` does both.
    Either way the bytes are those of :meth:`write` of each parsed row.
    :meth:`close` flushes everything (the stream stays open: :class:`AtomicTarget` closes it);
    :meth:`discard` drops what is buffered after a failure, without writing anything more.
    """

    def write(self, row: Mapping[str, Any]) -> None: ...

    def encode_page(self, rows: list[dict[str, Any]]) -> Any: ...

    def write_page(self, encoded: Any) -> None: ...

    def write_raw(self, rows: Sequence[Mapping[str, Any]]) -> None: ...

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


class _ParsingWriter:
    """Pages as :meth:`write` of each parsed row (nothing to do before: typed rows stay here)."""

    def write(self, row: Mapping[str, Any]) -> None:
        raise NotImplementedError

    @staticmethod
    def encode_page(rows: list[dict[str, Any]]) -> Any:
        return rows

    def write_page(self, encoded: Any) -> None:
        for row in encoded:
            self.write(parse_activity(row))

    def write_raw(self, rows: Sequence[Mapping[str, Any]]) -> None:
        for row in rows:
            self.write(parse_activity(row))


class _TextWriter(_ParsingWriter):
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


class JsonLinesWriter:
    """One activity per line, UTF-8, ``\\n`` line ends (see :func:`encode_json`).

    :meth:`encode_page` (and :meth:`write_raw`) writes the same bytes straight from the portal's rows
    (:func:`~airflow_provider_b24.export.lines.activity_lines`), a page at a time.
    """

    def __init__(self, stream: IO[bytes]) -> None:
        self._sink = _Unclosable(stream)
        self._out = io.BufferedWriter(self._sink, buffer_size=1 << 16)

    def write(self, row: Mapping[str, Any]) -> None:
        self._out.write(encode_json(row).encode("utf-8") + b"\n")

    @staticmethod
    def encode_page(rows: list[dict[str, Any]]) -> bytes:
        return activity_lines(rows)

    def write_page(self, encoded: bytes) -> None:
        self._out.write(encoded)

    def write_raw(self, rows: Sequence[Mapping[str, Any]]) -> None:
        self._out.write(activity_lines(rows))

    def close(self) -> None:
        self._out.close()  # flushes into the stream, closes only the wrapper

    def discard(self) -> None:
        self._sink.kill()
        self._out.close()


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
        self._csv.writerow([csv_cell(row.get(name)) for name in self.header])


def parquet_available() -> bool:
    """True when ``pyarrow`` can be imported."""
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        return False
    return True


_PARQUET_ROW_GROUP: Final = 10_000


class ParquetWriter(_ParsingWriter):
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
