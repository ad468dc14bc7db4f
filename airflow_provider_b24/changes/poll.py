"""``source="poll"``: activities changed since a ``LAST_UPDATED`` cursor, read with ``crm.activity.list``.

The cursor is a second and the IDs already delivered *at* that second::

    {"last_updated": "2026-12-01T17:03:03+03:00", "ids": [17, 42]}

Invariant: every change with ``LAST_UPDATED`` before the cursor's second, and every listed ID at it,
has been delivered. ``LAST_UPDATED`` has whole-second resolution, so a strict ``>`` cursor would skip
a change made later in the same second, and a plain ``>=`` would re-send the cursor's own rows; the
ID set at the boundary second does neither.

The first step is **one HTTP request**, a batch of two ``crm.activity.list`` commands (``select ID,
LAST_UPDATED``, ``start=-1``, 50 rows each):

* ``after``: ``>LAST_UPDATED b``, ordered ``LAST_UPDATED``, then ``ID``;
* ``same``: ``=LAST_UPDATED b`` and ``!@ID <delivered at b>``, ordered ``ID`` (rows of the boundary
  second not delivered yet, e.g. changed in that second after the previous poll).

``after`` runs first inside the batch: if it finds rows past ``b``, the portal's clock had left
second ``b`` before ``same`` ran, so ``same`` sees all of ``b``. When nothing changed both are empty:
an idle poll is exactly one request. A full ``same`` page means more rows at ``b`` (a bulk change):
the step repeats with the grown ID set. A full ``after`` page moves ``b`` to its last second; the
next requests chain 25 (after, same) pairs keyed on the previous page's last row (``$result``
references), so a backlog costs one request per 1,250 rows. A poll stops after ``limit`` IDs
(2,500): the rest comes with the next poll, at once.

Limits: a row whose transaction commits more than a second after its ``LAST_UPDATED`` was set can
still be missed (as with any timestamp cursor); deletions are invisible (use ``offline_events``).
When more than :data:`EXCLUDE_MAX` IDs share the boundary second, ``same`` pages by ``>ID`` instead of
excluding them (keeps requests small; a late same-second change below that ID is then missed).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from airflow_provider_b24.changes.changeset import MAX_IDS_PER_EVENT, ChangeSet, split_changes
from airflow_provider_b24.changes.feed import FeedPoll
from airflow_provider_b24.client.batch import BatchResult
from airflow_provider_b24.client.encoding import ResultRef
from airflow_provider_b24.client.errors import Bitrix24ServerError
from airflow_provider_b24.client.pagination import PAGE_SIZE, rows_of

METHOD: Final = "crm.activity.list"
SELECT: Final = ["ID", "LAST_UPDATED"]
#: Up to this many delivered IDs at the boundary second are excluded with ``!@ID``; beyond, ``>ID``.
EXCLUDE_MAX: Final = 500


class BatchClient(Protocol):
    """What the feeds need: a hook or a client (``call`` and ``batch``)."""

    def call(self, method: str, params: Mapping[str, Any] | None = None) -> Any: ...

    def batch(self, commands: Mapping[str, Any], *, halt: bool = False) -> BatchResult: ...


def parse_instant(value: str) -> dt.datetime:
    """An ISO 8601 portal datetime as an aware datetime (a value without offset is read as UTC)."""
    parsed = dt.datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


@dataclass(frozen=True)
class PollCursor:
    """A ``LAST_UPDATED`` second (ISO 8601, as the portal wrote it) and the IDs delivered at it."""

    last_updated: str
    ids: tuple[int, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-plain form (stored durably and put into event payloads)."""
        return {"last_updated": self.last_updated, "ids": sorted(self.ids)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PollCursor:
        """Read :meth:`to_dict`'s form back; ``ValueError`` naming what is wrong."""
        if not isinstance(data, Mapping) or not isinstance(data.get("last_updated"), str):
            raise ValueError(f"a poll cursor needs a 'last_updated' ISO 8601 string, got {data!r}")
        parse_instant(data["last_updated"])  # validates
        ids = data.get("ids") or []
        if not isinstance(ids, list):
            raise ValueError(f"a poll cursor's 'ids' must be a list of activity IDs, got {ids!r}")
        return cls(last_updated=data["last_updated"], ids=tuple(sorted({int(i) for i in ids})))


@dataclass
class PollResult:
    """One poll: the new IDs (ascending), the cursor after them, HTTP requests used, whether capped."""

    ids: list[int]
    cursor: PollCursor
    requests: int = 0
    capped: bool = False


@dataclass(order=True)
class _Change:
    at: dt.datetime
    id: int
    last_updated: str = field(compare=False)


def _changes(rows: list[Any]) -> list[_Change]:
    out = []
    for row in rows:
        if not isinstance(row, Mapping) or row.get("ID") is None or not row.get("LAST_UPDATED"):
            raise Bitrix24ServerError(f"{METHOD} returned a row without ID or LAST_UPDATED: {row!r:.200}")
        text = str(row["LAST_UPDATED"])
        out.append(_Change(parse_instant(text), int(row["ID"]), text))
    return out


#: Chained (after, same) pairs per request once a poll has a backlog: 25 x 2 = 50 commands.
CHAIN_PAIRS: Final = 25
#: Commands in one batch request.
MAX_BATCH_COMMANDS: Final = 50
_ORDER_AFTER: Final = {"LAST_UPDATED": "ASC", "ID": "ASC"}


def _after(base_filter: Mapping[str, Any], boundary: str) -> tuple[str, dict[str, Any]]:
    return (
        METHOD,
        {
            "filter": {**base_filter, ">LAST_UPDATED": boundary},
            "order": dict(_ORDER_AFTER),
            "select": list(SELECT),
            "start": -1,
        },
    )


def _same(
    base_filter: Mapping[str, Any], boundary: str, extra: Mapping[str, Any]
) -> tuple[str, dict[str, Any]]:
    return (
        METHOD,
        {
            "filter": {**base_filter, "=LAST_UPDATED": boundary, **extra},
            "order": {"ID": "ASC"},
            "select": list(SELECT),
            "start": -1,
        },
    )


def _first_pair(base_filter: Mapping[str, Any], boundary: str, seen: set[int]) -> dict[str, Any]:
    """``after0`` then ``same0``: the boundary second's undelivered rows and the next 50 after it."""
    extra: dict[str, Any] = {}
    if len(seen) > EXCLUDE_MAX:
        extra[">ID"] = max(seen)
    elif seen:
        # The user's own exclusions stay (a ">ID" needs no merging: every seen ID already satisfies it).
        user_excluded = base_filter.get("!@ID") or []
        if not isinstance(user_excluded, list):
            user_excluded = [user_excluded]
        extra["!@ID"] = sorted(seen | {int(i) for i in user_excluded})
    return {"after0": _after(base_filter, boundary), "same0": _same(base_filter, boundary, extra)}


def _chained_pairs(
    base_filter: Mapping[str, Any], boundary: str, seen: set[int], pairs: int
) -> dict[str, Any]:
    """``after0``/``same0`` plus ``pairs - 1`` pairs keyed on the previous ``after`` page's last row."""
    commands = _first_pair(base_filter, boundary, seen)
    for k in range(1, pairs):
        previous = f"after{k - 1}"
        last_second = ResultRef(previous, PAGE_SIZE - 1, "LAST_UPDATED")
        last_id = ResultRef(previous, PAGE_SIZE - 1, "ID")
        commands[f"after{k}"] = _after(base_filter, last_second)
        commands[f"same{k}"] = _same(base_filter, last_second, {">ID": last_id})
    return commands


def _chained_second(
    base_filter: Mapping[str, Any], boundary: str, seen: set[int], pages: int
) -> dict[str, Any]:
    """The rest of one busy second: ``same0``, then pages keyed on the previous page's last ID."""
    commands = {"same0": _first_pair(base_filter, boundary, seen)["same0"]}
    for k in range(1, pages):
        commands[f"same{k}"] = _same(
            base_filter, boundary, {">ID": ResultRef(f"same{k - 1}", PAGE_SIZE - 1, "ID")}
        )
    return commands


def poll_changes(
    client: BatchClient,
    cursor: PollCursor,
    *,
    filter: Mapping[str, Any] | None = None,
    limit: int = MAX_IDS_PER_EVENT,
) -> PollResult:
    """Activities changed since ``cursor`` (at most ``limit``), and the cursor after them.

    ``filter`` (a ``crm.activity.list`` filter without ``LAST_UPDATED`` keys) is ANDed in. The
    first request holds one (after, same) pair. When a page comes back full, later requests chain
    pages in one batch, each keyed on the previous page's last row (``$result[...][49][...]``):
    :data:`CHAIN_PAIRS` (after, same) pairs for a backlog across seconds, or 50 ``same`` pages for
    one busy second. Pages whose predecessor was not full are ignored (their references point at
    a missing row).
    """
    base_filter = dict(filter or {})
    boundary, boundary_at = cursor.last_updated, parse_instant(cursor.last_updated)
    seen = set(cursor.ids)
    collected: list[_Change] = []
    requests = 0
    mode = "first"  # "first": one pair; "backlog": chained pairs; "second": chained same pages
    while mode != "done" and len(collected) < limit:
        if mode == "second":
            commands = _chained_second(base_filter, boundary, seen, MAX_BATCH_COMMANDS)
        else:
            commands = _chained_pairs(base_filter, boundary, seen, 1 if mode == "first" else CHAIN_PAIRS)
        outcome = client.batch(commands)
        requests += outcome.requests
        for key in commands:
            if key in outcome.errors:
                raise outcome.errors[key]
        next_mode = "done"
        pages = len([k for k in commands if k.startswith("same")])
        for k in range(pages):
            same_rows = rows_of(outcome.results.get(f"same{k}"))
            same = sorted(c for c in _changes(same_rows) if c.at == boundary_at and c.id not in seen)
            collected.extend(same)
            seen.update(c.id for c in same)
            if len(same_rows) >= PAGE_SIZE and same:
                next_mode = "second"  # the boundary second has more rows
                if mode == "second" and k < pages - 1:
                    continue
                break
            if mode == "second":
                next_mode = "backlog"  # the busy second is exhausted: what comes after it
                break
            after_rows = rows_of(outcome.results.get(f"after{k}"))
            after = sorted(c for c in _changes(after_rows) if c.at > boundary_at)
            if not after:
                next_mode = "done"
                break
            collected.extend(after)
            last = after[-1]
            boundary, boundary_at = last.last_updated, last.at
            seen = {c.id for c in after if c.at == boundary_at}
            if len(after_rows) < PAGE_SIZE:
                next_mode = "done"  # everything after the old boundary is read
                break
            next_mode = "backlog"  # a full page: more after it
            if len(collected) >= limit:
                break
        mode = next_mode
    capped = len(collected) >= limit
    taken = collected[:limit]
    if not taken:
        return PollResult(ids=[], cursor=cursor, requests=requests)
    last = taken[-1]
    at_last = {c.id for c in taken if c.at == last.at}
    if last.at == parse_instant(cursor.last_updated):
        at_last |= set(cursor.ids)
    new_cursor = PollCursor(last_updated=last.last_updated, ids=tuple(sorted(at_last)))
    return PollResult(ids=sorted({c.id for c in taken}), cursor=new_cursor, requests=requests, capped=capped)


def portal_now(client: BatchClient) -> str:
    """The portal's current time (``server.time``), ISO 8601 in the portal's offset."""
    value = client.call("server.time")
    if not isinstance(value, str) or not value:
        raise Bitrix24ServerError(f"server.time answered {value!r}, not an ISO 8601 time")
    parse_instant(value)
    return value


def start_cursor(client: BatchClient, *, filter: Mapping[str, Any] | None = None) -> PollCursor:
    """A cursor at the portal's "now" that treats this second's earlier changes as history.

    One request: ``server.time`` and, in the same batch, the IDs already at that second
    (``=LAST_UPDATED $result[now]``), so a watcher started at 12:00:00.7 does not deliver a change
    made at 12:00:00.2. (Beyond 50 such IDs, the rest of that second is delivered.)
    """
    outcome = client.batch(
        {
            "now": ("server.time", {}),
            "at": _same(dict(filter or {}), ResultRef("now"), {}),
        }
    )
    if "now" in outcome.errors:
        raise outcome.errors["now"]
    now = outcome.results.get("now")
    if not isinstance(now, str) or not now:
        raise Bitrix24ServerError(f"server.time answered {now!r}, not an ISO 8601 time")
    now_at = parse_instant(now)
    ids: tuple[int, ...] = ()
    if "at" not in outcome.errors:  # a portal that refuses the reference: start at "now" without the IDs
        ids = tuple(sorted(c.id for c in _changes(rows_of(outcome.results.get("at"))) if c.at == now_at))
    return PollCursor(last_updated=now, ids=ids)


class PollFeed:
    """The ``poll`` source as a :class:`~airflow_provider_b24.changes.feed.ChangeFeed`.

    :param client: a hook or client.
    :param filter: extra ``crm.activity.list`` filter (ANDed in).
    :param start_from: ISO 8601 start point; ``None``: the portal's "now" (no history).
    :param limit: IDs per poll (and per event).
    """

    source = "poll"

    def __init__(
        self,
        client: BatchClient,
        *,
        filter: Mapping[str, Any] | None = None,
        start_from: str | None = None,
        limit: int = MAX_IDS_PER_EVENT,
    ) -> None:
        self.client = client
        self.filter = dict(filter or {})
        self.start_from = start_from
        self.limit = limit

    def start(self) -> dict[str, Any]:
        """The first state: ``start_from``, or the portal's "now" (one request, see :func:`start_cursor`)."""
        if self.start_from:
            cursor = PollCursor(last_updated=self.start_from)
        else:
            cursor = start_cursor(self.client, filter=self.filter)
        return {"source": self.source, **cursor.to_dict()}

    def poll(self, state: Mapping[str, Any]) -> FeedPoll:
        """One poll from ``state``: events and the state after them (see :class:`FeedPoll`)."""
        cursor = PollCursor.from_dict(state)
        result = poll_changes(self.client, cursor, filter=self.filter, limit=self.limit)
        new_state = {"source": self.source, **result.cursor.to_dict()}
        changes: list[ChangeSet] = split_changes(result.ids, limit=self.limit) if result.ids else []
        return FeedPoll(
            changes=changes,
            state=new_state,
            requests=result.requests,
            more=result.capped,
            cursor={"last_updated": result.cursor.last_updated},
        )

    def commit(self, poll: FeedPoll) -> int:
        """Nothing to confirm at the portal for a poll (the cursor is the whole state)."""
        return 0


__all__ = [
    "EXCLUDE_MAX",
    "SELECT",
    "BatchClient",
    "PollCursor",
    "PollFeed",
    "PollResult",
    "parse_instant",
    "poll_changes",
    "portal_now",
    "start_cursor",
]
