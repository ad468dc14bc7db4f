"""One poll for many waiters: the pure logic behind the triggers' shared poller (no Airflow, no asyncio).

Deferred sensors on one portal each wait for a few activity IDs. One batched ``crm.activity.list``
request answers 2,500 IDs, so instead of one request per waiter per interval, one *shared* poll
fetches the union of everybody's IDs with the union of their ``select`` and hands each waiter its
own rows, projected back to the fields it asked for (:func:`split_rows`). This module decides

* what to fetch: :func:`union_ids`, :func:`union_select`;
* what each waiter gets: :func:`member_rows`, :func:`project_row`, :func:`split_rows`;
* when to poll and whom to include: :class:`PollSchedule` (times are plain floats, so it runs on
  any clock, fakes included);
* whose fault an error is: :func:`error_scope` and :func:`poll_members`, which isolates a waiter
  whose request the portal refuses (bisection) without failing the others.

The asyncio side (one poller per event loop and connection, the worker thread, the events) is
:mod:`airflow_provider_b24.triggers.shared_poller`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final

from airflow_provider_b24.activities import (
    COMMANDS_PER_BATCH,
    IDS_PER_COMMAND,
    SELECT_ONLY_FIELDS,
    ActivityParseError,
    FetchResult,
    coerce_activity_ids,
    coerce_select,
)
from airflow_provider_b24.activities.waiting import (
    ActivityWaitStatus,
    evaluate_activities,
    select_for,
    validate_until,
)
from airflow_provider_b24.exceptions import (
    Bitrix24ArgumentError,
    Bitrix24BadRequest,
    Bitrix24ConfigError,
    Bitrix24MethodNotFound,
)

__all__ = [
    "IDS_PER_REQUEST",
    "ErrorScope",
    "Fetch",
    "MemberAnswer",
    "MemberSpec",
    "PollOutcome",
    "PollSchedule",
    "error_scope",
    "member_rows",
    "poll_members",
    "prepare_member",
    "project_row",
    "requests_for",
    "split_rows",
    "union_ids",
    "union_select",
]

#: IDs one HTTP request answers (50 IDs per ``crm.activity.list`` command, 50 commands per batch).
IDS_PER_REQUEST: Final = IDS_PER_COMMAND * COMMANDS_PER_BATCH


# --------------------------------------------------------------------------------------------------
# What each waiter asks for
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MemberSpec:
    """One waiter's question, validated: its IDs (unique, input order), fields and ``until``.

    :ivar fields: the ``select`` its own fetch would send (:func:`coerce_select` of
        :func:`select_for`): ``["*", ...]`` or an explicit field list with ``ID``.
    """

    ids: tuple[int, ...]
    fields: tuple[str, ...]
    until: str


def prepare_member(activity_ids: Any, select: Any, until: Any) -> MemberSpec:
    """Validate a waiter's arguments as its own fetch would (``ValueError`` subclasses name the value)."""
    checked_until = validate_until(until)
    ids = coerce_activity_ids(activity_ids)
    fields = coerce_select(select_for(select, checked_until))
    return MemberSpec(ids=tuple(ids), fields=tuple(fields), until=checked_until)


def union_ids(specs: Iterable[MemberSpec]) -> list[int]:
    """Every waiter's IDs once, in first-seen order."""
    return list(dict.fromkeys(i for spec in specs for i in spec.ids))


def requests_for(n_ids: int) -> int:
    """HTTP requests one poll of ``n_ids`` unique IDs needs: ``ceil(n / 2500)``."""
    return math.ceil(n_ids / IDS_PER_REQUEST)


def union_select(field_lists: Iterable[Sequence[str]]) -> list[str]:
    """One ``select`` that returns every field any waiter asked for.

    Every name any waiter asked for is kept (in first-seen order); ``*`` leads when any waiter wants
    every field. ``["*", "SUBJECT"]`` returns what ``["*"]`` does, so a waiter with an explicit list
    costs nothing extra next to a ``*`` waiter, and a waiter that added ``COMMUNICATIONS`` to ``*``
    still gets it.
    """
    names: dict[str, None] = {}
    star = False
    for fields in field_lists:
        for name in fields:
            if name == "*":
                star = True
            else:
                names.setdefault(name, None)
    return (["*"] if star else []) + list(names)


def _beyond_star(name: str) -> bool:
    """Fields ``*`` does not return: the select-only ones (``COMMUNICATIONS``...) and user fields."""
    return name in SELECT_ONLY_FIELDS or name.startswith("UF_")


def project_row(row: Mapping[str, Any], fields: Sequence[str]) -> dict[str, Any]:
    """The row a waiter's own fetch with ``fields`` would have returned, cut from a union-select row.

    An explicit field list keeps exactly its names (``ID`` included); ``*`` keeps everything except
    the fields ``*`` does not return that only other waiters asked for.
    """
    wanted = set(fields)
    if "*" in wanted:
        return {k: v for k, v in row.items() if k in wanted or not _beyond_star(k)}
    return {k: v for k, v in row.items() if k in wanted}


@dataclass
class MemberAnswer:
    """One waiter's share of a poll: its rows (input order, projected), missing IDs, and verdict."""

    rows: list[dict[str, Any]]
    missing_ids: list[int]
    status: ActivityWaitStatus


def member_rows(
    spec: MemberSpec, by_id: Mapping[int, Mapping[str, Any]], union: Sequence[str]
) -> MemberAnswer:
    """One waiter's answer from the rows of a shared poll (keyed by ID)."""
    project = set(spec.fields) != set(union)
    rows: list[dict[str, Any]] = []
    missing: list[int] = []
    for activity_id in spec.ids:
        row = by_id.get(activity_id)
        if row is None:
            missing.append(activity_id)
        else:
            rows.append(project_row(row, spec.fields) if project else dict(row))
    return MemberAnswer(rows=rows, missing_ids=missing, status=evaluate_activities(rows, missing, spec.until))


def split_rows(
    specs: Mapping[Any, MemberSpec], result: FetchResult, union: Sequence[str]
) -> dict[Any, MemberAnswer]:
    """Every waiter's answer from one shared fetch of :func:`union_ids` with :func:`union_select`."""
    by_id = {int(row["ID"]): row for row in result.activities}
    return {key: member_rows(spec, by_id, union) for key, spec in specs.items()}


# --------------------------------------------------------------------------------------------------
# Whose error is it
# --------------------------------------------------------------------------------------------------


class ErrorScope(StrEnum):
    """Who a failed shared poll's error belongs to."""

    #: the connection's: credentials, scope, access, the portal, the network... every waiter's.
    CONNECTION = "connection"
    #: possibly one waiter's: the portal refused the request's content (a bad field name, say), or a
    #: row did not parse; the waiters are polled in smaller groups to find whose it is.
    REQUEST = "request"


def error_scope(error: BaseException) -> ErrorScope:
    """Whether a permanent poll error may depend on what was asked (:attr:`ErrorScope.REQUEST`)."""
    if isinstance(error, Bitrix24ArgumentError | ActivityParseError):
        return ErrorScope.REQUEST  # what was asked (IDs, select), or a row of the answer
    if isinstance(error, Bitrix24MethodNotFound | Bitrix24ConfigError):
        return ErrorScope.CONNECTION
    if isinstance(error, Bitrix24BadRequest):
        return ErrorScope.REQUEST
    return ErrorScope.CONNECTION


#: ``fetch(ids, select) -> FetchResult``: one shared fetch (``fetch_activities`` with a hook).
Fetch = Callable[[list[int], list[str]], FetchResult]


@dataclass
class PollOutcome:
    """What a shared poll of a group of waiters produced.

    :ivar answers: the waiters that got rows.
    :ivar failed: waiters whose own request the portal refused (a final error that is theirs alone).
    :ivar error: an error about the whole poll (the connection's, or transient): the waiters in
        neither ``answers`` nor ``failed`` got nothing from this poll.
    :ivar requests: HTTP requests used (as ``fetch`` reported them).
    """

    answers: dict[Any, MemberAnswer] = field(default_factory=dict)
    failed: dict[Any, BaseException] = field(default_factory=dict)
    error: BaseException | None = None
    requests: int = 0


class _Abort(Exception):
    """An error about the whole poll met while isolating a waiter's error."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


def poll_members(
    fetch: Fetch, specs: Mapping[Any, MemberSpec], *, is_final: Callable[[BaseException], bool]
) -> PollOutcome:
    """One shared poll of ``specs``; a final request-scoped error is pinned on the waiters it belongs to.

    ``is_final(error)``: waiting will not fix ``error`` (the failure policy's FAIL or UNEXPECTED).
    When the portal refuses the union request for a reason that may depend on what was asked
    (:func:`error_scope`), the waiters are split in halves, each half polled on its own, and failing
    halves split again, down to single waiters: those whose request fails get the error, the others
    their rows (about ``2 log2(n)`` extra requests for one bad waiter). When both halves of a group
    fail alike, the error is taken to be the whole group's (a portal that refuses every request), so
    such an error costs two extra requests, not ``2n``. Transient and connection-wide errors end the
    poll at once (``outcome.error``).
    """
    outcome = PollOutcome()
    try:
        outcome.answers.update(_fetch_group(fetch, specs, outcome))
    except Exception as error:
        if not is_final(error) or error_scope(error) is ErrorScope.CONNECTION:
            outcome.error = error
            return outcome
        try:
            _isolate(fetch, dict(specs), error, outcome, is_final)
        except _Abort as abort:
            outcome.error = abort.error
    return outcome


def _fetch_group(
    fetch: Fetch, specs: Mapping[Any, MemberSpec], outcome: PollOutcome
) -> dict[Any, MemberAnswer]:
    union = union_select(spec.fields for spec in specs.values())
    result = fetch(union_ids(specs.values()), union)
    outcome.requests += result.requests
    return split_rows(specs, result, union)


def _isolate(
    fetch: Fetch,
    specs: dict[Any, MemberSpec],
    error: BaseException,
    outcome: PollOutcome,
    is_final: Callable[[BaseException], bool],
) -> None:
    """``specs`` failed together with ``error``: find whose it is (see :func:`poll_members`)."""
    keys = list(specs)
    if len(keys) == 1:
        outcome.failed[keys[0]] = error
        return
    halves = [{k: specs[k] for k in keys[: len(keys) // 2]}, {k: specs[k] for k in keys[len(keys) // 2 :]}]
    errors: list[BaseException | None] = []
    for half in halves:
        try:
            outcome.answers.update(_fetch_group(fetch, half, outcome))
            errors.append(None)
        except Exception as half_error:
            if not is_final(half_error) or error_scope(half_error) is ErrorScope.CONNECTION:
                raise _Abort(half_error) from half_error
            errors.append(half_error)
    first, second = errors
    if first is not None and second is not None and _same_error(first, second):
        outcome.failed.update(dict.fromkeys(keys, error))  # refused alike: the group's error
        return
    for half, refused in zip(halves, errors, strict=True):
        if refused is not None:
            _isolate(fetch, half, refused, outcome, is_final)


def _same_error(a: BaseException, b: BaseException) -> bool:
    return type(a) is type(b) and str(a) == str(b)


# --------------------------------------------------------------------------------------------------
# When to poll, and whom
# --------------------------------------------------------------------------------------------------


@dataclass
class _Slot:
    """A waiter in the schedule: when it may first be polled, how stale it may get, when last polled."""

    ready_at: float
    interval: float
    last_polled: float | None = None

    def due_at(self) -> float:
        return self.ready_at if self.last_polled is None else self.last_polled + self.interval


@dataclass
class PollSchedule:
    """Due-time scheduling of one shared poll: at most one poll per *cadence*, nobody polled too early.

    * A waiter joins with ``ready_at`` (its start + ``first_poll_delay``: it is never polled before)
      and ``interval`` (its ``poll_interval``: how stale its answer may get).
    * The *cadence* is the smallest interval among the waiters; polls start at least a cadence apart,
      and at least ``requests / rate`` seconds apart (the client's leaky-bucket drain rate), so the
      shared poll never asks faster than the portal allows, and after a transient error not before
      ``hold_until``.
    * A poll is due when the earliest waiter is due; it includes every ready waiter that would be
      due before the next poll (so waiters share polls instead of each pulling its own), and waits
      for waiters that become ready just after (a fleet deferring together): up to ``coalesce_s``,
      and at most ``coalesce_share`` of the cadence.

    A waiter that joins between polls is first polled at the next poll after its ``ready_at`` (at
    most one cadence later, and never later than its own interval after it), not in a poll of its own.
    """

    #: seconds a due poll may wait for waiters that become ready just after it...
    coalesce_s: float = 1.0
    #: ... and at most this share of the cadence (a 5 s cadence waits up to 1 s, a 0.1 s one 0.02 s).
    coalesce_share: float = 0.2
    slots: dict[Any, _Slot] = field(default_factory=dict)
    last_poll_at: float | None = None
    hold_until: float = 0.0
    min_gap_s: float = 0.0

    def join(self, key: Any, *, ready_at: float, interval: float) -> None:
        """Add a waiter (``interval`` ≤ 0 is treated as "as often as the cadence allows")."""
        self.slots[key] = _Slot(ready_at=float(ready_at), interval=max(0.0, float(interval)))

    def leave(self, key: Any) -> None:
        """Remove a waiter (unknown keys are ignored)."""
        self.slots.pop(key, None)

    def __len__(self) -> int:
        return len(self.slots)

    def cadence(self) -> float:
        """The smallest interval among the waiters (0 when there are none)."""
        return min((s.interval for s in self.slots.values()), default=0.0)

    def next_poll_at(self) -> float | None:
        """When the next poll should start (``None``: nobody to poll)."""
        if not self.slots:
            return None
        at = min(slot.due_at() for slot in self.slots.values())
        if self.last_poll_at is not None:
            at = max(at, self.last_poll_at + max(self.cadence(), self.min_gap_s))
        at = max(at, self.hold_until)
        window = min(self.coalesce_s, self.coalesce_share * self.cadence())
        late = [
            s.ready_at
            for s in self.slots.values()
            if s.last_polled is None and at < s.ready_at <= at + window
        ]
        return max([at, *late])

    def take(self, now: float) -> list[Any]:
        """The waiters to include in a poll starting at ``now``: ready, and due before the next poll."""
        horizon = now + max(self.cadence(), self.min_gap_s)
        return [
            key
            for key, slot in self.slots.items()
            if slot.ready_at <= now and (slot.last_polled is None or slot.due_at() <= horizon)
        ]

    def polled(self, keys: Iterable[Any], *, started_at: float, requests: int = 0, rate: float = 0.0) -> None:
        """Record a poll that started at ``started_at`` and used ``requests`` (``rate``: requests/s)."""
        self.last_poll_at = started_at
        self.min_gap_s = requests / rate if rate > 0 else 0.0
        for key in keys:
            slot = self.slots.get(key)
            if slot is not None:
                slot.last_polled = started_at

    def hold(self, until: float) -> None:
        """No poll before ``until`` (after a transient error: the retry wait, or a 429's reset)."""
        self.hold_until = max(self.hold_until, until)
