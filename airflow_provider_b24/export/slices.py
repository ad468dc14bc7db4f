"""Reading one window in parallel: disjoint ID slices, each paged by chained keyset batches at once.

Keyset batches depend on each other only within one ID range: batch *k+1* filters ``>ID`` on the
last ID of batch *k*. Disjoint ranges do not depend on each other, so a window is read as K slices
at once. One probe request (a batch of two commands) brings the first page of the window and its
highest ID; the IDs above the first page are split into K ranges (the last one open-ended, so rows
created meanwhile are read as the sequential export reads them), and each range is paged by its own
thread with 50 chained pages per request, through the client's shared rate limiter. Rows come out
in ascending ID order, each ID once: each slice is spooled to a temporary file (``marshal``, one
record per page) and read back in range order as soon as it is written, so memory holds a few
batches whatever the window's size. A page can be encoded on the thread that read it (the JSON lines
export spools its finished lines, so the reader only writes them).

Requests: 1 probe + per slice ``floor(n_i / 2500) + 1`` ≤ ``ceil(N / 2500) + K + 1``.
No Airflow here (layer 2).
"""

from __future__ import annotations

import marshal
import tempfile
import threading
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from itertools import islice
from pathlib import Path
from typing import Any, Final

from airflow_provider_b24.client.encoding import ResultRef
from airflow_provider_b24.client.pagination import PAGE_SIZE, rows_of
from airflow_provider_b24.exceptions import Bitrix24ServerError
from airflow_provider_b24.export.reading import LIST_METHOD, iter_window_rows

__all__ = [
    "DEFAULT_SLICES",
    "MIN_IDS_PER_SLICE",
    "iter_window_pages_parallel",
    "iter_window_rows_parallel",
]

#: Slices read at once by default.
DEFAULT_SLICES: Final = 4
#: A slice spans at least this many IDs (two full batches): below that a window is read in fewer slices.
MIN_IDS_PER_SLICE: Final = 2 * 50 * PAGE_SIZE
_PAGES_PER_REQUEST: Final = 50


def _row_id(row: Any) -> int:
    value = row.get("ID") if isinstance(row, Mapping) else None
    try:
        return int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise Bitrix24ServerError(f"{LIST_METHOD} returned a row without a numeric ID: {value!r}") from None


def _filters_on_id(flt: Mapping[str, Any]) -> bool:
    return any(str(key).lstrip("!<>=@%").upper() == "ID" for key in flt)


def _list_params(flt: Mapping[str, Any], select: Sequence[str], **extra: Any) -> dict[str, Any]:
    return {"filter": dict(flt), "select": list(select), "order": {"ID": "ASC"}, "start": -1, **extra}


def slice_bounds(low: int, high: int, slices: int) -> list[tuple[int, int | None]]:
    """``(after, up_to)`` ID ranges covering ``(low, ∞)``: ``slices`` at most, each spanning at least
    :data:`MIN_IDS_PER_SLICE` IDs up to ``high``; the last is open-ended (``up_to`` is ``None``)."""
    count = max(1, min(slices, (high - low) // MIN_IDS_PER_SLICE))
    cuts = [low + (high - low) * i // count for i in range(count)]
    return [(cut, cuts[i + 1] if i + 1 < count else None) for i, cut in enumerate(cuts)]


def _read_slice(
    client: Any,
    *,
    flt: Mapping[str, Any],
    select: Sequence[str],
    after: int,
    up_to: int | None,
    deliver: Callable[[list[Any]], None],
    stop: threading.Event,
) -> None:
    """Page IDs in ``(after, up_to]`` with chained keyset batches, handing each batch's new rows on."""
    bounded = dict(flt) if up_to is None else {**flt, "<=ID": up_to}
    cursor = after
    while not stop.is_set():
        commands = {
            f"p{i}": (
                LIST_METHOD,
                _list_params(
                    {**bounded, ">ID": cursor if i == 0 else ResultRef(f"p{i - 1}", PAGE_SIZE - 1, "ID")},
                    select,
                ),
            )
            for i in range(_PAGES_PER_REQUEST)
        }
        outcome = client.batch(commands)
        rows_out: list[Any] = []
        finished = False
        for key in commands:
            if key in outcome.errors:
                raise outcome.errors[key]
            rows = rows_of(outcome.results.get(key))
            progressed = False
            for row in rows:
                row_id = _row_id(row)
                if row_id <= cursor or (up_to is not None and row_id > up_to):
                    continue  # a repeat (BINDINGS filters list an activity twice) or a bad reference
                cursor = row_id
                progressed = True
                rows_out.append(row)
            if len(rows) < PAGE_SIZE:
                finished = True
                break
            if not progressed:
                break  # a $result reference went wrong: restart the chain from our own cursor
        deliver(rows_out)
        # Hold nothing while the next batch is in flight: a decoded batch is ~10 MB of objects.
        del outcome, rows_out, rows
        if finished:
            return


class _EncodeFailed(Exception):
    """Ends a slice's thread after ``encode`` failed (the error waits in the spool at its place)."""


def _same(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return rows


class _Spool:
    """One slice's pages in a temporary file, readable while the slice is still being written.

    Each page (at most 50 rows) is encoded on the slice's thread and written as one ``marshal``
    record ``(rows, encoded)``, its size kept in :attr:`sizes`: the reader takes the record's bytes in
    one read and ``marshal.loads`` them (``marshal.load`` on a file reads a few bytes at a time: ten
    times slower). A failed ``encode`` ends the slice there: :attr:`late_error` is raised when the
    reader gets to it, so the export reports its first bad row in ID order as the sequential one did.
    """

    def __init__(self, path: Path, changed: threading.Condition, encode: Callable[[list[Any]], Any]) -> None:
        self.path = path
        self.changed = changed
        self.encode = encode
        self.writer = path.open("wb")
        self.sizes: list[int] = []
        self.written = 0
        self.done = False
        self.error: BaseException | None = None
        self.late_error: BaseException | None = None

    def put(self, rows: list[Any]) -> None:
        sizes = []
        failed: Exception | None = None
        for start in range(0, len(rows), PAGE_SIZE):
            page = rows[start : start + PAGE_SIZE]
            try:
                encoded = self.encode(page)
            except Exception as err:
                failed = err
                break
            record = marshal.dumps((len(page), encoded))
            self.writer.write(record)
            sizes.append(len(record))
        self.writer.flush()
        with self.changed:
            self.sizes.extend(sizes)
            self.written += len(sizes)
            self.late_error = failed
            self.changed.notify_all()
        if failed is not None:
            raise _EncodeFailed from failed

    def finish(self, error: BaseException | None = None) -> None:
        self.writer.close()
        with self.changed:
            self.done = True
            self.error = error
            self.changed.notify_all()


def _ready(spool: _Spool, read: int, spools: list[_Spool]) -> Callable[[], bool]:
    """Whether the reader can go on: a new page, the slice's end, or a failed slice anywhere."""
    return lambda: spool.written > read or spool.done or any(x.error is not None for x in spools)


def iter_window_rows_parallel(
    client: Any,
    filter: Mapping[str, Any],
    select: Sequence[str],
    *,
    slices: int = DEFAULT_SLICES,
) -> Iterator[dict[str, Any]]:
    """Raw rows of ``crm.activity.list`` for ``filter``, in ascending ID order, each ID once, read
    in up to ``slices`` disjoint ID ranges at once (see the module docstring).

    Falls back to :func:`iter_window_rows` (one chain) for ``slices=1``, a client without ``batch``,
    or a filter on ``ID`` itself.
    """
    for _, page in iter_window_pages_parallel(client, filter, select, slices=slices):
        yield from page


def iter_window_pages_parallel(
    client: Any,
    filter: Mapping[str, Any],
    select: Sequence[str],
    *,
    slices: int = DEFAULT_SLICES,
    encode: Callable[[list[dict[str, Any]]], Any] = _same,
) -> Generator[tuple[int, Any], None, None]:
    """The rows of :func:`iter_window_rows_parallel` a page (at most 50 rows, never none) at a time,
    as ``(rows in the page, encode(page))``, in ID order.

    ``encode`` runs on the thread that read the page (the slices' own threads; this one for the first
    page and the one-chain fallback), so it must be thread-safe and return something ``marshal`` can
    write (bytes, or the rows themselves): the JSON lines export encodes its output there, and what
    comes back here is only written. Its first error in ID order is raised here, as a read error is.
    """
    if slices <= 1 or not callable(getattr(client, "batch", None)) or _filters_on_id(filter):
        rows = iter_window_rows(client, filter, select)
        while page := list(islice(rows, PAGE_SIZE)):
            yield len(page), encode(page)
        return
    probe = client.batch(
        {
            "first": (LIST_METHOD, _list_params(filter, select)),
            "last": (LIST_METHOD, {**_list_params(filter, ["ID"]), "order": {"ID": "DESC"}}),
        }
    )
    for key in ("first", "last"):
        if key in probe.errors:
            raise probe.errors[key]
    first = rows_of(probe.results.get("first"))
    cursor = 0
    first_page = []
    for row in first:
        row_id = _row_id(row)
        if row_id > cursor:
            cursor = row_id
            first_page.append(row)
    if first_page:
        yield len(first_page), encode(first_page)
    if len(first) < PAGE_SIZE:
        return
    last = rows_of(probe.results.get("last"))
    high = max((_row_id(row) for row in last), default=cursor)
    bounds = slice_bounds(cursor, max(high, cursor), slices)
    yield from _read_slices(client, filter, select, bounds, encode)


def _read_slices(
    client: Any,
    flt: Mapping[str, Any],
    select: Sequence[str],
    bounds: list[tuple[int, int | None]],
    encode: Callable[[list[dict[str, Any]]], Any],
) -> Iterator[tuple[int, Any]]:
    stop = threading.Event()
    changed = threading.Condition()
    with tempfile.TemporaryDirectory(prefix="b24-export-slices-") as tmp:
        spools = [_Spool(Path(tmp) / f"slice{i}.marshal", changed, encode) for i in range(len(bounds))]

        def produce(spool: _Spool, after: int, up_to: int | None) -> None:
            try:
                _read_slice(
                    client, flt=flt, select=select, after=after, up_to=up_to, deliver=spool.put, stop=stop
                )
            except _EncodeFailed:
                spool.finish()  # its error is raised by the reader at its place
            except BaseException as err:  # handed to the reader, raised there
                spool.finish(err)
            else:
                spool.finish()

        threads = [
            threading.Thread(
                target=produce, args=(spool, after, up_to), name=f"b24-export-slice{i}", daemon=True
            )
            for i, (spool, (after, up_to)) in enumerate(zip(spools, bounds, strict=True))
        ]
        for thread in threads:
            thread.start()
        try:
            for spool in spools:
                read = 0
                with spool.path.open("rb") as reader:
                    while True:
                        with changed:
                            changed.wait_for(_ready(spool, read, spools))
                            failed = next((x.error for x in spools if x.error is not None), None)
                            available, done, late = spool.written, spool.done, spool.late_error
                        if failed is not None:
                            raise failed
                        while read < available:
                            # our own file, written above by this process: not untrusted input
                            yield marshal.loads(reader.read(spool.sizes[read]))  # noqa: S302
                            read += 1
                        if late is not None and read == available:
                            raise late
                        if read == available and done:
                            break
        finally:
            stop.set()
            for thread in threads:
                thread.join()
