"""Incremental activity export: one ``LAST_UPDATED`` window, streamed to a file with flat memory.

Layer 2 of the provider (see ``docs/architecture.md``): no Airflow imports, so the operator, plain
scripts and the memory benchmark share one implementation. One concept per module; every public name
is importable from this package:

* :mod:`.window`: :func:`export_window` (``updated_from``/``updated_to`` -> a half-open UTC window),
  :func:`merge_filter` (the user's filter plus the window; keys the export owns are refused),
  :func:`normalise_select`.
* :mod:`.reading`: :func:`iter_window_rows` reads the window with the client's keyset pagination
  (``order ID ASC``, ``>ID``, ``start=-1``, 50 pages chained per batch: 2,500 rows per HTTP request;
  each ID once).
* :mod:`.slices`: the window read in disjoint ID slices at once, each page encoded on the thread that
  read it, merged in ID order through temporary spool files.
* :mod:`.encoding`: :func:`encode_json` keeps types recoverable (datetimes as ISO 8601 with offset,
  ``Decimal`` as an exact JSON number); :func:`read_jsonl` gets the typed rows back.
* :mod:`.lines`: :func:`activity_lines`, the JSON lines of wire rows without parsing them (the same
  bytes as :func:`encode_json` of each parsed row).
* :mod:`.collector`: the cyclic garbage collector paused while an export runs.
* :mod:`.writers`: :class:`JsonLinesWriter`, :class:`CsvWriter` and :class:`ParquetWriter` write rows
  as they arrive (the parquet one buffers one row group).
* :mod:`.target`: :class:`AtomicTarget` writes to a hidden temporary sibling and renames it over
  ``path`` only on success; local paths, ``file://`` URLs and object storage paths.
* :mod:`.run`: :func:`export_activities` ties them together and returns an :class:`ExportResult`.
* :mod:`.errors`: :class:`ExportArgumentError` (a ``Bitrix24ArgumentError``) and :class:`ExportCancelled`.
"""

from __future__ import annotations

from airflow_provider_b24.activities.fields import STAR_FIELDS
from airflow_provider_b24.export.encoding import encode_json, read_jsonl
from airflow_provider_b24.export.errors import ExportArgumentError, ExportCancelled
from airflow_provider_b24.export.lines import activity_lines
from airflow_provider_b24.export.reading import LIST_METHOD, SupportsIterList, iter_window_rows
from airflow_provider_b24.export.run import ExportResult, export_activities
from airflow_provider_b24.export.target import (
    AtomicTarget,
    RemotePath,
    classify_path,
    is_local_path,
    local_path,
)
from airflow_provider_b24.export.window import (
    RESERVED_FILTER_KEYS,
    ExportWindow,
    export_window,
    merge_filter,
    normalise_select,
    parse_bound,
)
from airflow_provider_b24.export.writers import (
    FORMATS,
    CsvWriter,
    JsonLinesWriter,
    ParquetWriter,
    RowWriter,
    csv_header,
    open_writer,
    parquet_available,
    validate_format,
)

__all__ = [
    "FORMATS",
    "LIST_METHOD",
    "RESERVED_FILTER_KEYS",
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
    "SupportsIterList",
    "activity_lines",
    "classify_path",
    "csv_header",
    "encode_json",
    "export_activities",
    "export_window",
    "is_local_path",
    "iter_window_rows",
    "local_path",
    "merge_filter",
    "normalise_select",
    "open_writer",
    "parquet_available",
    "parse_bound",
    "read_jsonl",
    "validate_format",
]
