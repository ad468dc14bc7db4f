"""Fetching activities by ID in as few HTTP requests as Bitrix24 allows.

``crm.activity.list`` with an ``@ID`` (IN) filter of 50 IDs per command and 50 commands per batch:
2,500 activities per request (or ``crm.activity.get`` per ID, 50 per request, for exact per-ID
errors). No Airflow here (layer 2): the operator, the sensor, the trigger and scripts share it.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final, Protocol

from airflow_provider_b24.activities.collector import young_collections_only
from airflow_provider_b24.activities.fields import SELECT_ONLY_FIELDS
from airflow_provider_b24.activities.ids import coerce_activity_ids
from airflow_provider_b24.activities.parsing import ActivityParseError, parse_activities, parse_activity
from airflow_provider_b24.activities.select import InvalidSelect, coerce_select
from airflow_provider_b24.exceptions import (
    Bitrix24AccessDenied,
    Bitrix24ArgumentError,
    Bitrix24BadRequest,
    Bitrix24InsufficientScope,
    Bitrix24MethodNotFound,
    Bitrix24NotFound,
    Bitrix24ServerError,
)

__all__ = [
    "COMMANDS_PER_BATCH",
    "DEFAULT_CONCURRENCY",
    "IDS_PER_COMMAND",
    "FetchProgress",
    "FetchResult",
    "FetchStrategy",
    "SupportsBatch",
    "fetch_activities",
    "max_requests",
]

log = logging.getLogger(__name__)

#: ``crm.activity.list`` answers at most 50 rows a page, so an ``@ID`` filter holds at most 50 IDs
#: (one command, one page, no pagination); a batch holds at most 50 commands.
IDS_PER_COMMAND: Final = 50
COMMANDS_PER_BATCH: Final = 50
#: Batches in flight at once in :func:`fetch_activities` (each still passes the portal's leaky bucket).
DEFAULT_CONCURRENCY: Final = 4


class FetchStrategy(StrEnum):
    """How :func:`fetch_activities` asks the portal."""

    #: ``crm.activity.list`` with ``filter {"@ID": [≤50 IDs]}``: 2,500 activities per HTTP request.
    #: A missing ID is either deleted or not visible to the caller; the list cannot tell which.
    LIST = "list"
    #: ``crm.activity.get`` per ID, 50 per HTTP request: exact per-ID errors (not found vs access
    #: denied) at 50 times the requests. Cannot return ``COMMUNICATIONS``/``FILES``/``BINDINGS``.
    GET = "get"


class _BatchResultLike(Protocol):
    results: Mapping[str, Any]
    errors: Mapping[str, Exception]
    requests: int


class SupportsBatch(Protocol):
    """What :func:`fetch_activities` needs: ``Bitrix24Client`` and ``Bitrix24Hook`` both fit."""

    def batch(self, commands: Any, *, halt: bool = ...) -> Any: ...


@dataclass(frozen=True)
class FetchProgress:
    """Where a fetch stands after one more HTTP request (passed to the ``progress`` callback)."""

    #: IDs asked about so far, and in total.
    done: int
    total: int
    #: activities found so far.
    found: int
    #: HTTP requests used so far (the client's retries included).
    requests: int
    #: seconds spent waiting for the client's rate limiter so far.
    limiter_wait_s: float
    #: seconds since the fetch started.
    elapsed_s: float


@dataclass
class FetchResult:
    """The outcome of :func:`fetch_activities`.

    :ivar activities: the rows found, **in input order**: raw (parse them with :func:`parse_activity`),
        or parsed when ``fetch_activities(..., parse=True)``.
    :ivar missing_ids: the requested IDs that were not returned, in input order.
    :ivar errors: ``strategy="get"`` only: ``{id: Bitrix24Error}`` for every missing ID, telling
        not found (``Bitrix24NotFound``) from access denied (``Bitrix24AccessDenied``).
    :ivar requests: HTTP requests used.
    :ivar limiter_wait_s: seconds spent waiting for the client's rate limiter.
    :ivar strategy: the strategy used.
    """

    activities: list[dict[str, Any]] = field(default_factory=list)
    missing_ids: list[int] = field(default_factory=list)
    errors: dict[int, Exception] = field(default_factory=dict)
    requests: int = 0
    limiter_wait_s: float = 0.0
    strategy: FetchStrategy = FetchStrategy.LIST


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _limiter_wait_s(client: Any) -> float:
    """The client's cumulative rate-limiter wait, if it reports one (``client.stats.limiter_wait_s``)."""
    wait = getattr(getattr(client, "stats", None), "limiter_wait_s", None)
    return float(wait) if isinstance(wait, int | float) else 0.0


def _row_id(row: Any, method: str) -> int:
    if not isinstance(row, Mapping):
        raise ActivityParseError("ID", row, "integer", f"{method} returned a non-object row")
    raw = row.get("ID")
    if isinstance(raw, str) and raw.isascii() and raw.isdigit():  # the usual "123": no full parse needed
        return int(raw)
    value = parse_activity({"ID": raw})["ID"]
    if not isinstance(value, int):
        raise ActivityParseError("ID", row.get("ID"), "integer", f"{method} returned a row without an ID")
    return value


def _rows(result: Any) -> Iterable[Any]:
    """A list method's result: a list of rows (or, PHP-style, an object keyed by position)."""
    if isinstance(result, Mapping):
        return result.values()
    if isinstance(result, list):
        return result
    # Not "no rows": an answer without rows would report every ID missing (and a sensor wait forever).
    raise Bitrix24ServerError(f"crm.activity.list answered without rows (result is {type(result).__name__})")


def _is_per_id_error(error: Exception) -> bool:
    """Whether a ``crm.activity.get`` error is about that one ID (not found, access denied to it, a bad
    ID), as opposed to one about the whole call (credentials, scope, limits, server faults, unknown
    method), which must be raised rather than reported as a missing ID."""
    if isinstance(error, Bitrix24InsufficientScope | Bitrix24MethodNotFound):
        return False
    per_id = isinstance(error, Bitrix24NotFound | Bitrix24AccessDenied | Bitrix24BadRequest)
    return per_id and not getattr(error, "retryable", False)


#: From this many IDs on, the cyclic collector is paused during the fetch (see :mod:`.collector`).
_GC_PAUSE_IDS: Final = 1000


def fetch_activities(
    client: SupportsBatch,
    ids: Any,
    *,
    select: Any = None,
    strategy: FetchStrategy | str = FetchStrategy.LIST,
    progress: Callable[[FetchProgress], None] | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
    parse: bool = False,
) -> FetchResult:
    """Fetch activities by ID, in input order, with as few HTTP requests as Bitrix24 allows.

    ``strategy="list"`` (default) sends ``crm.activity.list`` commands with ``filter {"@ID": [...]}``
    (50 IDs each, ``start: -1`` so the portal skips its row count), 50 commands per batch: at most
    ``ceil(N / 2500)`` HTTP requests for N unique IDs. The portal answers in its own order; the rows
    are put back in input order. An ID the list does not return is either deleted or not visible to
    the caller: Bitrix24 cannot tell them apart here. ``strategy="get"`` sends one
    ``crm.activity.get`` per ID (50 per request) and records the exact error of each missing ID.

    :param client: a ``Bitrix24Client`` or anything with its ``batch`` method (e.g. ``Bitrix24Hook``).
    :param ids: activity IDs in any form :func:`coerce_activity_ids` accepts (coerced and
        de-duplicated here).
    :param select: fields to return (see :func:`coerce_select`); default every field
        ``crm.activity.get`` returns.
    :param strategy: ``"list"`` or ``"get"``.
    :param progress: called after each HTTP request with a :class:`FetchProgress`.
    :param concurrency: batches (of up to 2,500 IDs) in flight at once. Requests still pass the
        client's per-portal leaky bucket, so this lowers wall time (the portal answers each batch in
        a fraction of a second) without sending more requests or more than the portal allows. ``1``
        sends them one after another.
    :param parse: return the rows parsed by :func:`parse_activity`. Each batch is parsed as soon as it
        arrives, while the next batches are still in flight (the same requests, through the same
        limiter), rather than all at the end.
    :raises InvalidActivityIds: before any request, for IDs that are not IDs.
    :raises InvalidSelect: before any request, for a bad ``select`` (or special fields with ``"get"``).
    :raises Bitrix24Error: errors about the whole call (auth, scope, limits that outlived the client's
        retries, a failing list command) are raised as the client raised them.
    """
    try:
        strategy = FetchStrategy(strategy)
    except ValueError:
        choices = ", ".join(repr(s.value) for s in FetchStrategy)
        raise Bitrix24ArgumentError(f"strategy must be one of {choices}, got {strategy!r}") from None
    unique_ids = coerce_activity_ids(ids)
    fields = coerce_select(select)
    if strategy is FetchStrategy.GET:
        special = [name for name in fields if name in SELECT_ONLY_FIELDS]
        if special:
            raise InvalidSelect(
                f"strategy='get' cannot return {', '.join(special)} (crm.activity.get has no select); "
                "use strategy='list'"
            )

    result = FetchResult(strategy=strategy)
    if not unique_ids:
        return result

    started = time.monotonic()
    wait_at_start = _limiter_wait_s(client)
    found: dict[int, dict[str, Any]] = {}
    per_request = (
        IDS_PER_COMMAND * COMMANDS_PER_BATCH if strategy is FetchStrategy.LIST else COMMANDS_PER_BATCH
    )
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise Bitrix24ArgumentError(f"concurrency must be a positive integer, got {concurrency!r}")
    fetch_group = _fetch_group_list if strategy is FetchStrategy.LIST else _fetch_group_get
    done = 0
    # A large fetch decodes and parses thousands of rows in a few threads: without the pause, the
    # collector's passes over an Airflow worker's heap cost about as much as the decoding itself.
    paused = young_collections_only() if len(unique_ids) >= _GC_PAUSE_IDS else contextlib.nullcontext()
    with paused:
        for group, part in _run_groups(
            fetch_group, client, list(_chunks(unique_ids, per_request)), fields, concurrency
        ):
            fresh = {k: v for k, v in part.found.items() if k not in found}
            if parse:  # ActivityParseError: raised here; the batches not yet sent are not sent
                fresh = dict(zip(fresh, parse_activities(list(fresh.values())), strict=True))
            found.update(fresh)
            result.errors.update(part.errors)
            result.requests += part.requests
            done += len(group)
            result.limiter_wait_s = _limiter_wait_s(client) - wait_at_start
            if progress is not None:
                progress(
                    FetchProgress(
                        done=done,
                        total=len(unique_ids),
                        found=len(found),
                        requests=result.requests,
                        limiter_wait_s=result.limiter_wait_s,
                        elapsed_s=time.monotonic() - started,
                    )
                )

    result.activities = [found[activity_id] for activity_id in unique_ids if activity_id in found]
    result.missing_ids = [activity_id for activity_id in unique_ids if activity_id not in found]
    log.debug(
        "fetch_activities(%s): %d requested, %d found, %d missing, %d requests",
        strategy.value,
        len(unique_ids),
        len(result.activities),
        len(result.missing_ids),
        result.requests,
    )
    return result


@dataclass
class _GroupResult:
    """What one batch (one HTTP request, unless retried) brought back."""

    found: dict[int, dict[str, Any]] = field(default_factory=dict)
    errors: dict[int, Exception] = field(default_factory=dict)
    requests: int = 0


def _run_groups(
    fetch_group: Callable[[SupportsBatch, Sequence[int], list[str]], _GroupResult],
    client: SupportsBatch,
    groups: list[Sequence[int]],
    fields: list[str],
    concurrency: int,
) -> Iterator[tuple[Sequence[int], _GroupResult]]:
    """Fetch the groups, up to ``concurrency`` at once, yielding each as it completes.

    The first error is raised once the batches already in flight have finished; the rest are not sent.
    """
    if concurrency == 1 or len(groups) == 1:
        for group in groups:
            yield group, fetch_group(client, group, fields)
        return
    with ThreadPoolExecutor(
        max_workers=min(concurrency, len(groups)), thread_name_prefix="b24-fetch"
    ) as pool:
        futures = {pool.submit(fetch_group, client, group, fields): group for group in groups}
        try:
            for future in as_completed(futures):
                yield futures[future], future.result()
        finally:
            for future in futures:
                future.cancel()


def _fetch_group_list(client: SupportsBatch, group: Sequence[int], fields: list[str]) -> _GroupResult:
    part = _GroupResult()
    commands: dict[str, tuple[str, Mapping[str, Any]]] = {}
    for number, chunk in enumerate(_chunks(group, IDS_PER_COMMAND)):
        commands[f"ids{number}"] = (
            "crm.activity.list",
            {"filter": {"@ID": list(chunk)}, "select": fields, "start": -1},
        )
    batch: _BatchResultLike = client.batch(commands, halt=False)
    part.requests = batch.requests
    for key in commands:
        if key in batch.errors:
            # A list command fails as a whole (e.g. "Access denied." for a user without CRM rights).
            raise batch.errors[key]
    wanted = set(group)
    for key in commands:
        for row in _rows(batch.results.get(key)):
            activity_id = _row_id(row, "crm.activity.list")
            if activity_id in wanted and activity_id not in part.found:
                part.found[activity_id] = row
    return part


def _fetch_group_get(client: SupportsBatch, group: Sequence[int], fields: list[str]) -> _GroupResult:
    part = _GroupResult()
    commands = {f"id{activity_id}": ("crm.activity.get", {"id": activity_id}) for activity_id in group}
    batch: _BatchResultLike = client.batch(commands, halt=False)
    part.requests = batch.requests
    project = "*" not in fields
    for activity_id in group:
        key = f"id{activity_id}"
        error = batch.errors.get(key)
        if error is not None:
            if not _is_per_id_error(error):
                raise error
            part.errors[activity_id] = error
            continue
        row = batch.results.get(key)
        if isinstance(row, Mapping) and row:
            if _row_id(row, "crm.activity.get") != activity_id:  # pragma: no cover - a broken portal
                raise ActivityParseError("ID", row.get("ID"), "integer", f"crm.activity.get?id={activity_id}")
            part.found[activity_id] = {k: v for k, v in row.items() if k in fields} if project else dict(row)
    return part


def max_requests(n_ids: int, strategy: FetchStrategy | str = FetchStrategy.LIST) -> int:
    """HTTP requests :func:`fetch_activities` needs for ``n_ids`` unique IDs when nothing is retried:
    ``ceil(n / 2500)`` with ``"list"``, ``ceil(n / 50)`` with ``"get"``."""
    per_request = IDS_PER_COMMAND * COMMANDS_PER_BATCH
    if FetchStrategy(strategy) is FetchStrategy.GET:
        per_request = COMMANDS_PER_BATCH
    return math.ceil(n_ids / per_request)
