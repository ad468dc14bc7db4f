"""What the provider reads and writes, named as OpenLineage datasets: namespaces, names, schemas.

Pure naming, no Airflow and no OpenLineage imports (the facets are built from these values in
:mod:`airflow_provider_b24.lineage`):

* a Bitrix24 portal is the datasource ``bitrix24://<portal host>[:port]``; an entity read through
  the REST API is a dataset named after its methods' prefix: ``crm.activity`` for
  ``crm.activity.list`` / ``crm.activity.get``;
* a file is named by OpenLineage's conventions for files and object stores: ``file`` + the absolute
  path for a local file, ``s3://<bucket>`` + the key, ``gs://<bucket>`` + the path, and so on.

Only the host of a portal URL is ever used: never its path, user info or query (a webhook URL holds
its secret code in the path). See ``docs/lineage.md``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any, Final
from urllib.parse import urlsplit

from airflow_provider_b24.activities.fields import (
    ACTIVITY_FIELD_TYPES,
    BINDING_FIELD_TYPES,
    COMMUNICATION_FIELD_TYPES,
    FILE_FIELD_TYPES,
    MULTIPLE_FIELDS,
)
from airflow_provider_b24.export.target import is_local_path, local_path
from airflow_provider_b24.export.writers import csv_header

__all__ = [
    "ACTIVITY_DATASET",
    "SCHEME",
    "DatasetName",
    "FileWrite",
    "Read",
    "SchemaField",
    "activity_fields",
    "export_asset_uri",
    "file_dataset",
    "file_uri",
    "portal_dataset",
    "portal_namespace",
    "rest_dataset",
    "written_fields",
]

#: The URI scheme of a Bitrix24 portal as a datasource (and of the provider's Airflow assets).
SCHEME: Final = "bitrix24"
#: The dataset of CRM activities (``crm.activity.*``).
ACTIVITY_DATASET: Final = "crm.activity"

#: REST method actions that read their entity, and those that change it.
_READ_ACTIONS: Final = frozenset({"get", "list"})
_WRITE_ACTIONS: Final = frozenset({"add", "update", "delete", "set"})
_METHOD: Final = re.compile(r"[a-z][a-z0-9_]*(\.[a-z0-9_]+)+")
#: Where a Jinja template starts in a templated path.
_JINJA: Final = re.compile(r"{{|{%|{#")
#: Type words of JSON objects (``SETTINGS``, ``COMMUNICATIONS[].ENTITY_SETTINGS``...).
_OBJECT_TYPES: Final = frozenset({"object", "communication_entity_settings"})
#: URL schemes OpenLineage spells differently from fsspec / Airflow.
_SCHEME_ALIASES: Final = {"s3a": "s3", "s3n": "s3", "gcs": "gs"}


@dataclass(frozen=True)
class DatasetName:
    """An OpenLineage dataset identity: ``namespace`` (the datasource) and ``name`` (the dataset)."""

    namespace: str
    name: str

    @property
    def uri(self) -> str:
        """``namespace`` and ``name`` as one URI (OpenLineage's ``scheme:[//authority]path``)."""
        if self.name.startswith("/"):
            return f"{self.namespace}{self.name}" if "://" in self.namespace else f"file://{self.name}"
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class SchemaField:
    """One column of a dataset: its name, a type word, and nested fields (for lists of objects)."""

    name: str
    type: str | None = None
    fields: tuple[SchemaField, ...] = ()


@dataclass(frozen=True)
class Read:
    """What a task read from Bitrix24, remembered by the operator for its lineage (small, no rows).

    :ivar portal: the portal's base URL (``scheme://host[:port]``, as the connection resolves it).
    :ivar select: the normalised ``select`` sent (``["*", ...]`` or field names).
    :ivar rows: activities read, or ``None`` if not known (e.g. the task failed).
    """

    portal: str
    select: tuple[str, ...]
    rows: int | None = None


@dataclass(frozen=True)
class FileWrite:
    """The file an export wrote: where (a path, ``file://`` or object storage URL), format, rows."""

    path: str
    format: str
    select: tuple[str, ...]
    rows: int


# ------------------------------------------------------------------ Bitrix24 side
def portal_namespace(portal: str) -> str:
    """``bitrix24://<host>[:port]`` for a portal URL or host (lower case; nothing but the authority).

    :raises ValueError: if ``portal`` has no host.
    """
    text = str(portal).strip()
    parts = urlsplit(text if "://" in text else f"https://{text}")
    host = parts.hostname
    if not host:
        raise ValueError(f"no portal host in {portal!r}")
    netloc = host if ":" not in host else f"[{host}]"
    if parts.port is not None and parts.port != {"https": 443, "http": 80}.get(parts.scheme):
        netloc = f"{netloc}:{parts.port}"
    return f"{SCHEME}://{netloc}"


def portal_dataset(portal: str, name: str = ACTIVITY_DATASET) -> DatasetName:
    """The dataset ``name`` (default ``crm.activity``) of a portal."""
    return DatasetName(namespace=portal_namespace(portal), name=name)


def rest_dataset(method: str) -> tuple[str, str] | None:
    """``("input" | "output", dataset)`` for a REST method, or ``None`` if it is no data read/write.

    ``crm.activity.list`` and ``crm.activity.get`` read ``crm.activity``; ``.add``, ``.update``,
    ``.delete`` and ``.set`` write it. Anything else (``crm.activity.fields``, ``profile``,
    ``batch``, ``event.bind``...) is not reported.
    """
    text = str(method).strip().lower().split("?", 1)[0]
    if not _METHOD.fullmatch(text):
        return None
    entity, _, action = text.rpartition(".")
    if action in _READ_ACTIONS:
        return "input", entity
    if action in _WRITE_ACTIONS:
        return "output", entity
    return None


def _nested(types: Any) -> tuple[SchemaField, ...]:
    return tuple(SchemaField(name, type_word) for name, type_word in types.items())


_NESTED: Final = {
    "COMMUNICATIONS": _nested(COMMUNICATION_FIELD_TYPES),
    "BINDINGS": _nested(BINDING_FIELD_TYPES),
    "FILES": _nested(FILE_FIELD_TYPES),
    "WEBDAV_ELEMENTS": _nested(FILE_FIELD_TYPES),
}


def _columns(select: Iterable[str]) -> list[str]:
    """The selected field names, ``*`` expanded to the documented default set (the export's columns)."""
    names = [str(name).strip().upper() for name in select] or ["*"]
    return csv_header(names)


def activity_fields(select: Iterable[str]) -> list[SchemaField]:
    """The fields a read of ``crm.activity`` returns, with the type words the portal declares.

    ``*`` is the documented default set (:data:`~airflow_provider_b24.activities.fields.STAR_FIELDS`);
    ``COMMUNICATIONS``, ``BINDINGS``, ``FILES`` carry their nested fields; a field the catalogue does
    not know (a user field ``UF_*``) has no type.
    """
    return [
        SchemaField(name, ACTIVITY_FIELD_TYPES.get(name), _NESTED.get(name, ())) for name in _columns(select)
    ]


def _written_type(type_word: str | None, name: str, format: str) -> str:
    if name in MULTIPLE_FIELDS or type_word in _OBJECT_TYPES:
        if format == "jsonl":
            return "array" if name in MULTIPLE_FIELDS else "object"
        return "string"  # JSON text in a CSV cell or a parquet string column
    if type_word is None:
        return "string"
    if type_word in ("integer", "user") or type_word.startswith("crm_enum_"):
        return "integer"
    return {"char": "boolean", "datetime": "timestamp", "double": "decimal"}.get(type_word, "string")


def written_fields(select: Iterable[str], format: str) -> list[SchemaField]:
    """The columns of an export file: the selected fields, typed as the file holds them.

    Types: ``integer``, ``boolean``, ``timestamp`` (ISO 8601 text in JSON lines and CSV),
    ``decimal``, ``string``; nested fields are ``array``/``object`` in JSON lines and JSON text
    (``string``) in CSV and parquet.
    """
    fields = []
    for source in activity_fields(select):
        nested = tuple(
            SchemaField(child.name, _written_type(child.type, child.name, format))
            for child in (source.fields if format == "jsonl" else ())
        )
        fields.append(SchemaField(source.name, _written_type(source.type, source.name, format), nested))
    return fields


# ------------------------------------------------------------------ files and object storage
def _split(path: Any) -> tuple[str, str, str]:
    """``(scheme, bucket, key)`` of an object storage URL or path object (no user info kept)."""
    protocol = getattr(path, "protocol", None)
    text = str(path)
    parts = urlsplit(text)
    scheme = (protocol if isinstance(protocol, str) and protocol else parts.scheme).lower()
    if isinstance(protocol, (list, tuple)):  # some fsspec filesystems list several
        scheme = parts.scheme.lower()
    bucket = parts.netloc.rsplit("@", 1)[-1]
    return _SCHEME_ALIASES.get(scheme, scheme), bucket, parts.path.lstrip("/")


def file_dataset(path: str | os.PathLike[str] | Any) -> DatasetName:
    """The OpenLineage dataset of a file: ``file`` + absolute path, or ``<scheme>://<bucket>`` + key.

    A relative local path is made absolute against the current directory (where it is written).
    """
    if is_local_path(path):
        return DatasetName(namespace="file", name=str(local_path(path).absolute()))
    scheme, bucket, key = _split(path)
    return DatasetName(namespace=f"{scheme}://{bucket}" if bucket else scheme, name=key)


def file_uri(path: str | os.PathLike[str] | Any) -> str:
    """An Airflow asset URI for a file or folder: ``file:///abs/path`` or ``s3://bucket/key``."""
    if is_local_path(path):
        text = os.fspath(path) if isinstance(path, str | PurePath) else str(path)
        absolute = str(local_path(path).absolute())
        if text.endswith("/") and not absolute.endswith("/"):
            absolute += "/"
        return f"file://{absolute}"
    scheme, bucket, key = _split(path)
    return f"{scheme}://{bucket}/{key}"


def export_asset_uri(path: Any) -> str | None:
    """The asset an export declares for a (possibly templated) ``path``, known before rendering.

    A path without Jinja is its own asset (``file:///data/activities.jsonl``). A templated one is
    represented by its folder: the part before the first ``{{``/``{%``/``{#``, cut back to the last
    ``/`` (``file:///data/bitrix24`` for ``/data/bitrix24/{{ ds }}/a.jsonl``), because an asset
    is declared when the DAG is parsed. ``None`` when nothing static is left (the template starts
    the path), or for a relative local path (its folder depends on the worker's directory).
    """
    if not isinstance(path, str | PurePath) and not isinstance(getattr(path, "protocol", None), str):
        return None  # e.g. an XComArg: not known before the run
    text = os.fspath(path) if isinstance(path, str | PurePath) else str(path)
    match = _JINJA.search(text)
    if match:
        text = text[: match.start()]
        text = text[: text.rfind("/") + 1] if "/" in text else ""
    if not text.strip() or text.endswith("://"):
        return None
    if is_local_path(text):
        bare = urlsplit(text).path if text.startswith("file:") else text
        if not bare.startswith("/"):
            return None
    uri = file_uri(text)
    # Airflow drops a folder's trailing slash from asset URIs: say it the same way.
    return uri.rstrip("/") if urlsplit(uri).path.strip("/") else uri
