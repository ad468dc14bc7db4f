"""The export run: one ``LAST_UPDATED`` window, read, parsed and written to one file atomically.

:func:`export_activities` validates every argument before the first request, then ties the pieces
together (window, reading, writers, atomic target) and returns an :class:`ExportResult`.
No Airflow here (layer 2).
"""

from __future__ import annotations

import logging
import os
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from airflow_provider_b24.activities.collector import young_collections_only
from airflow_provider_b24.export.errors import ExportArgumentError, ExportCancelled
from airflow_provider_b24.export.reading import SupportsIterList, requests_so_far
from airflow_provider_b24.export.slices import DEFAULT_SLICES, iter_window_pages_parallel
from airflow_provider_b24.export.target import AtomicTarget, RemotePath
from airflow_provider_b24.export.window import export_window, merge_filter, normalise_select
from airflow_provider_b24.export.writers import open_writer, validate_format

__all__ = ["ExportResult", "export_activities"]

log = logging.getLogger(__name__)
_module_log = log

_PROGRESS_EVERY: Final = 25_000


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
    :ivar seconds: wall time.
    """

    path: str
    rows: int
    requests: int
    updated_from: str
    updated_to: str
    seconds: float = 0.0

    @property
    def duplicates(self) -> int:
        """Deprecated, always 0: the client's keyset paging yields each activity once."""
        warnings.warn(
            "ExportResult.duplicates is deprecated and always 0 (the client's paging drops repeats)",
            DeprecationWarning,
            stacklevel=2,
        )
        return 0

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
    slices: int = DEFAULT_SLICES,
) -> ExportResult:
    """Export the activities whose ``LAST_UPDATED`` is in ``[updated_from, updated_to)`` to ``path``.

    Every argument is validated before the first request. Rows are parsed
    (:func:`~airflow_provider_b24.activities.parse_activity`) and written as they arrive; the file
    appears at ``path`` only when the export is complete (:class:`AtomicTarget`).

    :param client: a :class:`~airflow_provider_b24.client.Bitrix24Client` (or anything with
        ``iter_list`` and ``stats.requests``).
    :param cancel: when set (e.g. by the operator's ``on_kill``), the export stops at the next page
        (50 rows) and raises :class:`ExportCancelled`; nothing is left at ``path`` or beside it.
    :param on_target: called with the :class:`AtomicTarget` before writing starts (so a kill handler
        can abort it).
    :param logger: where progress goes (the operator passes its task logger); default: this module's.
    :param slices: disjoint ID ranges read at once (:mod:`.slices`): one probe request, then each range
        paged by chained keyset batches through the client's rate limiter; rows still come out in ID
        order, memory stays flat, requests ≤ ``ceil(N / 2500) + slices + 1``. ``1`` reads one chain.
    :raises ExportArgumentError: for a bad window, filter, select, format or path.
    """
    log = logger if logger is not None else _module_log
    if isinstance(slices, bool) or not isinstance(slices, int) or slices < 1:
        raise ExportArgumentError(f"slices must be a positive integer, got {slices!r}")
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
    requests_before = requests_so_far(client)
    rows = 0
    next_progress = _PROGRESS_EVERY
    with target as stream, young_collections_only() as tick:
        writer = open_writer(name, stream, fields)
        # Pages are encoded on the threads that read them (JSON lines: the finished lines, straight
        # from the wire rows), then written here in ID order.
        pages = iter_window_pages_parallel(client, merged, fields, slices=slices, encode=writer.encode_page)
        try:
            for count, encoded in pages:
                if cancel is not None and cancel.is_set():
                    raise ExportCancelled(f"export to {shown} cancelled after {rows} rows")
                writer.write_page(encoded)
                rows += count
                tick()
                if rows >= next_progress:
                    next_progress += _PROGRESS_EVERY
                    log.info(
                        "exported %d activities in %d requests (%.1f s)",
                        rows,
                        requests_so_far(client) - requests_before,
                        time.monotonic() - started,
                    )
            if cancel is not None and cancel.is_set():
                raise ExportCancelled(f"export to {shown} cancelled after {rows} rows")
        except BaseException:
            _quietly(writer.discard)
            raise
        finally:
            pages.close()  # the reading threads stop here, not whenever the generator is collected
        writer.close()
    result = ExportResult(
        path=shown,
        rows=rows,
        requests=requests_so_far(client) - requests_before,
        updated_from=window.start_iso,
        updated_to=window.end_iso,
        seconds=round(time.monotonic() - started, 3),
    )
    log.info(
        "exported %d activities to %s in %d requests, %.1f s",
        result.rows,
        shown,
        result.requests,
        result.seconds,
    )
    return result
