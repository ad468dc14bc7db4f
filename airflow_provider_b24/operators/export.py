"""``Bitrix24ExportActivitiesOperator``: an incremental activity export to a file, for scheduled ETL.

XCom is for small values; tens of thousands of activities belong in files. This operator exports the
activities whose ``LAST_UPDATED`` falls in one half-open window (normally the DAG run's data interval)
to a JSON lines, CSV or parquet file, streaming with flat memory, and returns only a small summary.
The work is done by :mod:`airflow_provider_b24.export` (no Airflow imports); this module adapts it:
templating, the hook, object storage paths, Airflow's failure semantics and ``on_kill``.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import Asset, BaseOperator

from airflow_provider_b24.datasets import FileWrite, export_asset_uri, file_uri
from airflow_provider_b24.export import (
    AtomicTarget,
    ExportArgumentError,
    RemotePath,
    export_activities,
    is_local_path,
    normalise_select,
    validate_format,
)
from airflow_provider_b24.failures import permanent_errors_fail_the_task
from airflow_provider_b24.lineage import operator_lineage, read_by

if TYPE_CHECKING:
    from airflow.providers.openlineage.extractors import OperatorLineage
    from airflow.sdk import Context

    from airflow_provider_b24.datasets import Read
    from airflow_provider_b24.hooks.bitrix24 import Bitrix24Hook

__all__ = ["Bitrix24ExportActivitiesOperator", "export_asset"]


def export_asset(path: Any) -> Asset | None:
    """The Airflow asset a ``Bitrix24ExportActivitiesOperator`` with this ``path`` declares.

    Schedule a downstream DAG on it: ``schedule=[export_asset(PATH)]``. A fixed path is its own
    asset; a templated one is represented by its folder (the part before the first Jinja
    expression), since assets are declared when the DAG is parsed. ``None`` when nothing is fixed
    (the path starts with a template, is relative, or comes from XCom).
    """
    uri = export_asset_uri(path)
    return Asset(uri=uri) if uri is not None else None


class Bitrix24ExportActivitiesOperator(BaseOperator):
    """Export the activities updated in ``[updated_from, updated_to)`` to a file.

    Reads ``crm.activity.list`` with the fast keyset method (``order ID ASC``, ``>ID``,
    ``start=-1``, 50 pages chained per batch: about ``N / 2500 + 1`` HTTP requests for ``N`` rows),
    parses every activity (typed values) and writes it as it arrives. The file is written under a
    hidden temporary name beside ``path`` and renamed over ``path`` only when the export is complete,
    so a failed or killed run never leaves a partial file, and a re-run of the interval replaces it.

    Returns (XCom ``return_value``) ``{"path", "rows", "requests", "updated_from", "updated_to"}``;
    the two bounds are the ISO 8601 values sent to Bitrix24 (UTC, ``+00:00``).

    .. seealso:: ``docs/export.md``

    :param bitrix24_conn_id: the Bitrix24 connection (templated).
    :param updated_from: inclusive window start (templated): an ISO 8601 string with a UTC offset
        (``"{{ data_interval_start }}"`` renders as ``2024-01-01 00:00:00+00:00``, which is fine) or
        an aware datetime. Naive values are refused.
    :param updated_to: exclusive window end (templated), same forms; must be after ``updated_from``.
    :param filter: extra ``crm.activity.list`` filter ANDed with the window (templated), e.g.
        ``{"TYPE_ID": 2}``. ``>=LAST_UPDATED``, ``<LAST_UPDATED`` and ``>ID`` belong to the export and
        are refused.
    :param select: fields to export (templated); ``None`` means every plain field (``"*"``). Name
        ``COMMUNICATIONS``, ``FILES`` or ``BINDINGS`` to add them. ``ID`` is always included.
    :param path: the file to write (templated): a local path, a ``file://`` URL, or any
        ``airflow.sdk.ObjectStoragePath`` URL (``s3://``, ``gs://``... with the matching Airflow
        provider installed).
    :param format: ``"jsonl"`` (default), ``"csv"`` or ``"parquet"`` (needs ``pyarrow``).
    :param object_storage_conn_id: the Airflow connection for a non-local ``path`` (passed to
        ``ObjectStoragePath``); ``None`` uses the store's default.
    :param outlets: Airflow's; by default the export's asset (:func:`export_asset`): the file's URI
        for a fixed ``path``, the folder before the first Jinja expression for a templated one
        (``file:///data/b24`` for ``/data/b24/{{ ds }}.jsonl``). Each run's asset event carries the
        file written in its ``extra`` (``path``, ``rows``, ``updated_from``, ``updated_to``).
        Pass ``outlets=[...]`` to declare others, ``[]`` for none. See ``docs/lineage.md``.
    """

    template_fields: Sequence[str] = (
        "bitrix24_conn_id",
        "updated_from",
        "updated_to",
        "filter",
        "select",
        "path",
    )
    template_fields_renderers = {"filter": "json", "select": "json"}
    ui_color = "#2fc6f6"

    def __init__(
        self,
        *,
        bitrix24_conn_id: str = "bitrix24_default",
        updated_from: Any,
        updated_to: Any,
        filter: dict[str, Any] | str | None = None,
        select: Sequence[str] | str | None = None,
        path: str | os.PathLike[str],
        format: str = "jsonl",
        object_storage_conn_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        if "outlets" not in kwargs:
            kwargs["outlets"] = [asset] if (asset := export_asset(path)) is not None else []
        super().__init__(**kwargs)
        self.bitrix24_conn_id = bitrix24_conn_id
        self.updated_from = updated_from
        self.updated_to = updated_to
        self.filter = filter
        self.select = select
        self.path = path
        # Not templated, so a typo fails when the DAG is parsed rather than at 3 a.m.; a missing
        # pyarrow is reported by execute() (the scheduler's machine may differ from the worker's).
        self.format = validate_format(format, check_dependencies=False)
        self.object_storage_conn_id = object_storage_conn_id
        self._cancel = threading.Event()
        self._target: AtomicTarget | None = None
        #: What execute read and wrote, for the lineage (names, select, row counts; never data).
        self._lineage_read: Read | None = None
        self._lineage_write: FileWrite | None = None

    @cached_property
    def hook(self) -> Bitrix24Hook:
        """The Bitrix24 hook, created on first use (no I/O while the DAG is parsed)."""
        from airflow_provider_b24.hooks.bitrix24 import Bitrix24Hook

        return Bitrix24Hook(bitrix24_conn_id=self.bitrix24_conn_id)

    def _resolve_path(self) -> str | os.PathLike[str] | RemotePath:
        """A local path or ``file://`` URL as is; any other URL as an ``ObjectStoragePath``."""
        path = self.path
        if isinstance(path, RemotePath) and isinstance(getattr(path, "protocol", None), str):
            return path  # already an ObjectStoragePath
        if not isinstance(path, str | os.PathLike):
            raise ExportArgumentError(f"path must be a string or a path, got {type(path).__name__} {path!r}")
        if isinstance(path, str) and not path.strip():
            raise ExportArgumentError("path is empty")
        if is_local_path(path):
            return path
        from airflow.sdk import ObjectStoragePath

        return ObjectStoragePath(os.fspath(path), conn_id=self.object_storage_conn_id)

    def _remember_target(self, target: AtomicTarget) -> None:
        self._target = target

    def execute(self, context: Context) -> dict[str, Any]:
        """Run the export and return its summary.

        Bad arguments (window, filter, select, format, path: ``ExportArgumentError``, checked before
        any request) and auth/access errors fail the task without retries (``AirflowFailException``);
        transient errors that survive the client's own retries propagate for Airflow's retries. One
        rule for all: :func:`~airflow_provider_b24.failures.permanent_errors_fail_the_task`.
        """
        try:
            with permanent_errors_fail_the_task(self.task_id):
                # Everything that needs no portal is checked first (export_activities re-checks cheaply).
                validate_format(self.format)
                target = self._resolve_path()
                client = self.hook.get_conn()
                self._lineage_read = read_by(self.hook, self.select)  # rows: known at the end
                result = export_activities(
                    client,
                    updated_from=self.updated_from,
                    updated_to=self.updated_to,
                    path=target,
                    format=self.format,
                    filter=self.filter,
                    select=self.select,
                    cancel=self._cancel,
                    on_target=self._remember_target,
                    logger=self.log,
                )
        finally:
            self._target = None
        summary = result.to_xcom()
        if isinstance(self.path, str):
            summary["path"] = self.path  # as rendered, not as the object store spells it
        self._remember_lineage(context, target, result.rows, summary)
        return summary

    def _remember_lineage(self, context: Context, target: Any, rows: int, summary: dict[str, Any]) -> None:
        """Keep what was read and written (for OpenLineage) and describe the file in the asset event."""
        select = tuple(normalise_select(self.select))
        self._lineage_read = read_by(self.hook, select, rows=rows)
        uri = file_uri(target)  # no user info (an object store's conn_id)
        self._lineage_write = FileWrite(path=uri, format=self.format, select=select, rows=rows)
        outlet_events = context.get("outlet_events")
        if outlet_events is None:
            return
        extra: dict[str, Any] = {"path": uri, "rows": rows, "format": self.format}
        extra.update({key: summary[key] for key in ("updated_from", "updated_to")})
        for outlet in self.outlets:
            # Our asset (or one the user declared for the file or a folder above it).
            if isinstance(outlet, Asset) and (uri + "/").startswith(outlet.uri.rstrip("/") + "/"):
                outlet_events[outlet].extra.update(extra)

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> OperatorLineage:
        """OpenLineage: the input ``bitrix24://<portal host>`` / ``crm.activity`` and the file written.

        The file is named by OpenLineage's conventions (``file`` + absolute path, ``s3://<bucket>``
        + key...); both carry a schema facet and their row count. See ``docs/lineage.md``.
        """
        return operator_lineage(self._lineage_read, self._lineage_write)

    def on_kill(self) -> None:
        """Stop the export and remove its temporary file (``path`` keeps what it had)."""
        self._cancel.set()
        target = self._target
        if target is not None:
            target.abort()
