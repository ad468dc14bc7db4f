"""Bitrix24 CRM activities: typed parsing, activity-ID coercion and fetching activities by ID.

Layer 2 of the provider (see ``docs/architecture.md``): it builds on the REST client (layer 1) and
knows nothing about Airflow, so the operators, the sensor and plain scripts share one implementation.

* :func:`parse_activity` turns the strings Bitrix24 sends into ``int``, ``bool``, pendulum
  ``DateTime``, ``Decimal``... (the field table lives in :mod:`airflow_provider_b24._activity_fields`).
* :func:`coerce_activity_ids` accepts the many shapes "some activity IDs" take in a DAG (an int, a
  numeric string, a list, a Jinja-rendered list, upstream rows with an ``ID``) and returns a clean,
  de-duplicated ``list[int]`` or raises :class:`InvalidActivityIds` naming the bad value and its position.
* :func:`fetch_activities` fetches activities by ID in as few HTTP requests as Bitrix24 allows:
  ``crm.activity.list`` with an ``@ID`` (IN) filter of 50 IDs per command and 50 commands per batch,
  i.e. 2,500 activities per request.
"""

from __future__ import annotations

import ast
import json
import logging
import math
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from enum import StrEnum
from numbers import Integral
from typing import Any, Final, Protocol

from airflow_provider_b24._activity_fields import (
    ACTIVITY_FIELD_TYPES,
    COMMUNICATION_FIELD_TYPES,
    FILE_FIELD_TYPES,
    MULTIPLE_FIELDS,
    NO_DEADLINE_FIELDS,
    SMART_PROCESS_MIN_TYPE_ID,
    Activity,
    ActivityParseError,
    ActivityStatus,
    ActivityType,
    DescriptionType,
    Direction,
    NotifyType,
    OwnerType,
    Priority,
    parse_activity,
)
from airflow_provider_b24.exceptions import (
    Bitrix24AccessDenied,
    Bitrix24BadRequest,
    Bitrix24InsufficientScope,
    Bitrix24MethodNotFound,
    Bitrix24NotFound,
    Bitrix24ServerError,
)

__all__ = [
    "ACTIVITY_FIELD_TYPES",
    "COMMUNICATION_FIELD_TYPES",
    "FILE_FIELD_TYPES",
    "IDS_PER_COMMAND",
    "IDS_SHOWN",
    "MULTIPLE_FIELDS",
    "NO_DEADLINE_FIELDS",
    "SELECT_ONLY_FIELDS",
    "SMART_PROCESS_MIN_TYPE_ID",
    "Activity",
    "ActivityParseError",
    "ActivityStatus",
    "ActivityType",
    "DescriptionType",
    "Direction",
    "FetchProgress",
    "FetchResult",
    "FetchStrategy",
    "InvalidActivityIds",
    "InvalidSelect",
    "NotifyType",
    "OwnerType",
    "Priority",
    "SupportsBatch",
    "coerce_activity_ids",
    "coerce_select",
    "fetch_activities",
    "format_ids",
    "max_requests",
    "parse_activities",
    "parse_activity",
]

log = logging.getLogger(__name__)

#: ``crm.activity.list`` answers at most 50 rows a page, so an ``@ID`` filter holds at most 50 IDs
#: (one command, one page, no pagination); a batch holds at most 50 commands.
IDS_PER_COMMAND: Final = 50
COMMANDS_PER_BATCH: Final = 50
#: Batches in flight at once in :func:`fetch_activities` (each still passes the portal's leaky bucket).
DEFAULT_CONCURRENCY: Final = 4

#: Fields that ``select: ["*"]`` does not return: they must be named (reference §1.2, §3.3).
#: ``STORAGE_ELEMENT_IDS`` is what the docs' cURL example selects to get ``FILES``.
SELECT_ONLY_FIELDS: Final = frozenset(
    {"COMMUNICATIONS", "FILES", "BINDINGS", "WEBDAV_ELEMENTS", "STORAGE_ELEMENT_IDS"}
)


#: How many IDs a log line or an error message lists before it says "... and N more".
IDS_SHOWN: Final = 20


def format_ids(ids: Sequence[object], limit: int = IDS_SHOWN) -> str:
    """``"1, 2, 3"``, or the first ``limit`` items followed by ``", ... and N more"`` (logs, errors)."""
    shown = ", ".join(str(i) for i in ids[:limit])
    return f"{shown}, ... and {len(ids) - limit} more" if len(ids) > limit else shown


def parse_activities(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """:func:`parse_activity` over many rows (keeps their order)."""
    return [parse_activity(row) for row in rows]


# --------------------------------------------------------------------------------------------------
# Activity-ID coercion
# --------------------------------------------------------------------------------------------------


class InvalidActivityIds(ValueError):
    """Something given as activity IDs is not one.

    :ivar value: the offending value (the element, not the whole input).
    :ivar position: its 0-based position in the input list (or in the rendered string), ``None``
        when the input was a single value.
    :ivar reason: what is wrong with it.
    """

    def __init__(self, value: Any, position: int | None, reason: str) -> None:
        self.value = value
        self.position = position
        self.reason = reason
        where = "" if position is None else f" at position {position}"
        super().__init__(f"invalid activity ID {_short_repr(value)}{where}: {reason}")


_ACCEPTED = "expected a positive integer, a numeric string, or a row with an 'ID' key"
_DIGITS_RE = re.compile(r"[0-9]+")


def _short_repr(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def _coerce_one(item: Any, position: int | None, *, in_row: bool = False) -> int:
    """One element: an int, a numeric string, or (unless already inside one) a row with ``ID``/``id``."""
    if isinstance(item, bool):
        raise InvalidActivityIds(item, position, "a boolean is not an activity ID")
    if isinstance(item, Integral):
        number = int(item)
        if number <= 0:
            raise InvalidActivityIds(item, position, "activity IDs are positive integers")
        return number
    if isinstance(item, str):
        text = item.strip()
        if text.startswith("-") and _DIGITS_RE.fullmatch(text[1:]):
            raise InvalidActivityIds(item, position, "activity IDs are positive integers")
        if not _DIGITS_RE.fullmatch(text):
            raise InvalidActivityIds(item, position, _ACCEPTED)
        if int(text) <= 0:
            raise InvalidActivityIds(item, position, "activity IDs are positive integers")
        return int(text)
    if item is None:
        raise InvalidActivityIds(item, position, "None is not an activity ID")
    if isinstance(item, Mapping) and not in_row:
        for key in ("ID", "id"):
            if key in item:
                return _coerce_one(item[key], position, in_row=True)
        raise InvalidActivityIds(item, position, "a row without an 'ID' or 'id' key")
    if isinstance(item, float):
        raise InvalidActivityIds(item, position, "a float is not an activity ID; " + _ACCEPTED)
    if isinstance(item, Iterable) and not isinstance(item, bytes | bytearray):
        raise InvalidActivityIds(item, position, "nested collections are not accepted; " + _ACCEPTED)
    raise InvalidActivityIds(item, position, _ACCEPTED)


def _parse_literal(text: str) -> Any:
    """A rendered collection: JSON first (``[1, 2]``), then a Python literal (``(1, 2)``, ``{'ID': '1'}``)."""
    try:
        return json.loads(text)
    except ValueError:
        pass
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as err:
        raise InvalidActivityIds(
            text, None, f"not a readable list ({type(err).__name__}); {_ACCEPTED}"
        ) from None


def _elements(value: Any) -> Iterator[tuple[int | None, Any]]:
    """Split the input into ``(position, element)`` pairs without judging the elements yet."""
    if value is None:
        raise InvalidActivityIds(value, None, "got None; pass an empty list for no activities")
    if isinstance(value, bool | Integral | float):
        yield None, value
        return
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return
        if text[0] in "[({":
            parsed = _parse_literal(text)
            if isinstance(parsed, str | bool | Integral | float) or parsed is None:
                raise InvalidActivityIds(value, None, f"not a list; {_ACCEPTED}")
            yield from _elements(parsed)
            return
        if "," in text:
            yield from enumerate(text.split(","))
            return
        yield None, text
        return
    if isinstance(value, Mapping):
        yield None, value
        return
    if isinstance(value, bytes | bytearray) or not isinstance(value, Iterable):
        raise InvalidActivityIds(value, None, f"a {type(value).__name__} is not a list; {_ACCEPTED}")
    # list, tuple, set, generator, Airflow's lazy XCom sequence, ... (any non-string iterable)
    yield from enumerate(value)


def coerce_activity_ids(value: Any) -> list[int]:
    """Turn whatever a DAG hands over as "activity IDs" into a clean ``list[int]``.

    Accepted: an ``int``; a numeric string (``"42"``); a list, tuple, set or any other non-string
    iterable (e.g. Airflow's lazy XCom sequence) of those; a Jinja-rendered list (``"[1, 2, 3]"``,
    ``"(1, 2)"``, ``"1,2,3"``); rows with an ``ID`` or ``id`` key (e.g. activities from an upstream
    task, raw or parsed), alone or in a list. An empty list or an empty string gives ``[]``.

    Duplicates are dropped, keeping the order of first occurrence.

    :raises InvalidActivityIds: (a ``ValueError``) for anything else, naming the value and its
        position: ``"abc"``, ``0``, ``-1``, ``1.5``, ``True``, ``None`` (alone or inside a list),
        nested lists, a row without an ``ID``.
    """
    ids: list[int] = []
    seen: set[int] = set()
    for position, item in _elements(value):
        activity_id = _coerce_one(item, position)
        if activity_id not in seen:
            seen.add(activity_id)
            ids.append(activity_id)
    return ids


# --------------------------------------------------------------------------------------------------
# select
# --------------------------------------------------------------------------------------------------


class InvalidSelect(ValueError):
    """The ``select`` argument is not a list of field names (or does not fit the strategy)."""


def coerce_select(select: Any) -> list[str]:
    """Normalise ``select`` for ``crm.activity.list``.

    ``None`` means every field ``crm.activity.get`` returns, i.e. ``["*"]``. Naming only fields that
    ``*`` does not include (``COMMUNICATIONS``, ``FILES``, ``BINDINGS``...) *adds* them to ``*``;
    naming any plain field selects exactly those fields (``ID`` is always added: results are matched
    by it). Names are upper-cased and de-duplicated. A Jinja-rendered list or a comma-separated
    string is accepted too.
    """
    if select is None:
        return ["*"]
    if isinstance(select, str):
        text = select.strip()
        if text[:1] in ("[", "("):
            try:
                select = _parse_literal(text)
            except InvalidActivityIds:
                raise InvalidSelect(f"select: cannot read {select!r} as a list of field names") from None
        else:
            select = [part for part in text.split(",") if part.strip()]
    if isinstance(select, Mapping) or not isinstance(select, Iterable) or isinstance(select, str):
        raise InvalidSelect(f"select must be a list of field names, got {_short_repr(select)}")
    names: list[str] = []
    for position, name in enumerate(select):
        if not isinstance(name, str) or not name.strip():
            raise InvalidSelect(f"select: {name!r} at position {position} is not a field name")
        upper = name.strip().upper()
        if upper not in names:
            names.append(upper)
    if not names or all(name in SELECT_ONLY_FIELDS for name in names):
        names.insert(0, "*")
    elif "*" not in names and "ID" not in names:
        names.insert(0, "ID")
    return names


# --------------------------------------------------------------------------------------------------
# Fetching by ID
# --------------------------------------------------------------------------------------------------


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

    :ivar activities: the raw rows found, **in input order** (parse them with :func:`parse_activity`).
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


def fetch_activities(
    client: SupportsBatch,
    ids: Any,
    *,
    select: Any = None,
    strategy: FetchStrategy | str = FetchStrategy.LIST,
    progress: Callable[[FetchProgress], None] | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
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
    :raises InvalidActivityIds: before any request, for IDs that are not IDs.
    :raises InvalidSelect: before any request, for a bad ``select`` (or special fields with ``"get"``).
    :raises Bitrix24Error: errors about the whole call (auth, scope, limits that outlived the client's
        retries, a failing list command) are raised as the client raised them.
    """
    try:
        strategy = FetchStrategy(strategy)
    except ValueError:
        choices = ", ".join(repr(s.value) for s in FetchStrategy)
        raise ValueError(f"strategy must be one of {choices}, got {strategy!r}") from None
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
        raise ValueError(f"concurrency must be a positive integer, got {concurrency!r}")
    fetch_group = _fetch_group_list if strategy is FetchStrategy.LIST else _fetch_group_get
    done = 0
    for group, part in _run_groups(
        fetch_group, client, list(_chunks(unique_ids, per_request)), fields, concurrency
    ):
        found.update((k, v) for k, v in part.found.items() if k not in found)
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
                part.found[activity_id] = dict(row)
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
