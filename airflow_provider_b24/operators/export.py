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

from airflow.sdk import BaseOperator

from airflow_provider_b24.export import (
    AtomicTarget,
    ExportArgumentError,
    RemotePath,
    export_activities,
    is_local_path,
    validate_format,
)
from airflow_provider_b24.failures import permanent_errors_fail_the_task

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_provider_b24.hooks.bitrix24 import Bitrix24Hook

__all__ = ["Bitrix24ExportActivitiesOperator"]


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
        return summary

    def on_kill(self) -> None:
        """Stop the export and remove its temporary file (``path`` keeps what it had)."""
        self._cancel.set()
        target = self._target
        if target is not None:
            target.abort()
