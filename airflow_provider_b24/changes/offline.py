"""``source="offline_events"``: the portal's offline event queue for CRM activities (OAuth apps only).

Bitrix24 records a change of any entity whose event an application bound with ``event_type=offline``
in a queue the application pulls (the ``event.offline.*`` methods of the Bitrix24 docs). The queue keeps
the current state, not the history: repeated changes of one activity leave one record per event
name. It is the only way to see deletions.

The loop (reserve, deliver, confirm), each step a single HTTP request:

1. once: ``event.get``; ``event.bind`` (``event_type=offline``) for whichever of
   ``ONCRMACTIVITYADD/UPDATE/DELETE`` is not bound yet (idempotent);
2. a batch of three ``event.offline.get`` (one per event name, ``clear=0``: reserve, do not
   delete) — one request, also when the queue is empty;
3. the caller stores the ``process_id`` values, delivers the IDs, then
4. ``event.offline.clear`` for each ``process_id`` (a batch).

A reservation that was never confirmed (the triggerer died between 2 and 4) is re-read with
``event.offline.get(process_id=...)`` after a restart, so a change is delivered at least once.
An incoming webhook cannot do any of this: Bitrix24 answers ``403 WRONG_AUTH_TYPE`` ("only
applications may read offline events"); reservation needs the plan feature ``rest_offline_extended``
(else ``WRONG_LICENSE``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from airflow_provider_b24.changes.changeset import MAX_IDS_PER_EVENT, split_changes
from airflow_provider_b24.changes.feed import FeedPoll
from airflow_provider_b24.changes.poll import BatchClient
from airflow_provider_b24.client.errors import Bitrix24AccessDenied, Bitrix24Error, Bitrix24ServerError
from airflow_provider_b24.client.pagination import PAGE_SIZE, rows_of

OFFLINE_EVENTS: Final = ("ONCRMACTIVITYADD", "ONCRMACTIVITYUPDATE", "ONCRMACTIVITYDELETE")
_DELETE: Final = "ONCRMACTIVITYDELETE"
#: Records reserved per event name per request (3 x 800 = 2,400 ≤ one event's 2,500 IDs).
OFFLINE_LIMIT: Final = 800

WRONG_AUTH_TYPE_HELP: Final = (
    "source='offline_events' needs an OAuth application connection (auth_type 'oauth' of a local "
    "application authorised by a portal administrator): Bitrix24 refuses event.bind and "
    "event.offline.* to incoming webhooks with WRONG_AUTH_TYPE (only applications may read offline "
    "events). Use source='poll' with a webhook (deletions are then not reported)."
)
WRONG_LICENSE_HELP: Final = (
    "the portal's plan has no extended offline-event mode (feature rest_offline_extended), which "
    "source='offline_events' needs to reserve records and confirm them after delivery; "
    "use source='poll' on this portal"
)


def explain(error: Bitrix24Error) -> Bitrix24Error:
    """The same error with a message that says what to do, for the two refusals users will meet."""
    code = error.code.upper()
    if code == "WRONG_AUTH_TYPE":
        return Bitrix24AccessDenied(
            f"{WRONG_AUTH_TYPE_HELP} (portal said: {error.description})",
            code=error.code,
            http_status=error.http_status,
            method=error.method,
        )
    if code == "WRONG_LICENSE":
        return Bitrix24AccessDenied(
            f"{WRONG_LICENSE_HELP} (portal said: {error.description})",
            code=error.code,
            http_status=error.http_status,
            method=error.method,
        )
    return error


def _raise_errors(errors: Mapping[str, Bitrix24Error]) -> None:
    for error in errors.values():
        raise explain(error)


def ensure_offline_handlers(client: BatchClient) -> list[str]:
    """Bind the offline handlers of :data:`OFFLINE_EVENTS` that are missing; return those bound now.

    One ``event.get``; one ``event.bind`` batch only when something is missing. "Handler already
    binded" (a parallel binder won) counts as bound.
    """
    try:
        handlers = client.call("event.get")
    except Bitrix24Error as error:
        raise explain(error) from error
    bound = {
        str(h.get("event", "")).upper()
        for h in (handlers or [])
        if isinstance(h, Mapping) and str(h.get("offline", "0")) == "1" and not h.get("connector_id")
    }
    missing = [name for name in OFFLINE_EVENTS if name not in bound]
    if not missing:
        return []
    outcome = client.batch(
        {
            f"bind{i}": ("event.bind", {"event": name, "event_type": "offline"})
            for i, name in enumerate(missing)
        }
    )
    errors = {k: e for k, e in outcome.errors.items() if "already binded" not in e.description.lower()}
    _raise_errors(errors)
    return missing


def _activity_id(record: Mapping[str, Any]) -> int | None:
    data = record.get("EVENT_DATA")
    if not isinstance(data, Mapping):
        return None  # `false` on older portals: the record does not say which activity
    fields = data.get("FIELDS")
    if not isinstance(fields, Mapping):
        return None
    try:
        return int(str(fields.get("ID")))
    except (TypeError, ValueError):
        return None


def merge_offline_records(records: Iterable[Mapping[str, Any]]) -> tuple[list[int], list[int], int]:
    """Queue records → (changed IDs, deleted IDs, records without an activity ID).

    Records are applied in ``TIMESTAMP_X``, then ``ID`` order; a deleted activity is reported in
    ``deleted_ids`` only (IDs are never reused, so nothing can follow its deletion).
    """

    def order(record: Mapping[str, Any]) -> tuple[str, int]:
        try:
            return str(record.get("TIMESTAMP_X") or ""), int(str(record.get("ID") or 0))
        except ValueError:
            return str(record.get("TIMESTAMP_X") or ""), 0

    changed: set[int] = set()
    deleted: set[int] = set()
    unknown = 0
    for record in sorted(records, key=order):
        activity_id = _activity_id(record)
        if activity_id is None:
            unknown += 1
            continue
        if str(record.get("EVENT_NAME", "")).upper() == _DELETE:
            deleted.add(activity_id)
            changed.discard(activity_id)
        elif activity_id not in deleted:
            changed.add(activity_id)
    return sorted(changed), sorted(deleted), unknown


@dataclass
class OfflineBatch:
    """Reserved queue records, merged.

    :ivar process_ids: the reservations to confirm with ``event.offline.clear`` after delivery.
    :ivar ids: changed or created activity IDs; :ivar deleted_ids: deleted ones.
    :ivar records: queue records read; :ivar unknown: records that named no activity.
    :ivar full: some event name filled its page: more records are waiting.
    """

    process_ids: list[str] = field(default_factory=list)
    ids: list[int] = field(default_factory=list)
    deleted_ids: list[int] = field(default_factory=list)
    records: int = 0
    unknown: int = 0
    requests: int = 0
    full: bool = False


def _read(client: BatchClient, commands: dict[str, Any], limit: int) -> OfflineBatch:
    outcome = client.batch(commands)
    _raise_errors(outcome.errors)
    process_ids: list[str] = []
    records: list[Mapping[str, Any]] = []
    full = False
    for key in commands:
        result = outcome.results.get(key)
        if not isinstance(result, Mapping):
            raise Bitrix24ServerError(
                f"event.offline.get answered {result!r:.200}, not {{process_id, events}}"
            )
        events = [e for e in (result.get("events") or []) if isinstance(e, Mapping)]
        records.extend(events)
        full = full or len(events) >= limit
        pid = result.get("process_id")
        if pid and events and str(pid) not in process_ids:
            process_ids.append(str(pid))
    ids, deleted, unknown = merge_offline_records(records)
    return OfflineBatch(
        process_ids=process_ids,
        ids=ids,
        deleted_ids=deleted,
        records=len(records),
        unknown=unknown,
        requests=outcome.requests,
        full=full,
    )


def reserve_offline_changes(client: BatchClient, *, limit: int = OFFLINE_LIMIT) -> OfflineBatch:
    """Reserve up to ``limit`` queue records per activity event name (``clear=0``), in one request."""
    commands = {
        f"get{i}": (
            "event.offline.get",
            {"filter": {"=EVENT_NAME": name}, "order": {"ID": "ASC"}, "clear": 0, "limit": limit},
        )
        for i, name in enumerate(OFFLINE_EVENTS)
    }
    return _read(client, commands, limit)


def reread_offline_batches(
    client: BatchClient, process_ids: list[str], *, limit: int = OFFLINE_LIMIT
) -> OfflineBatch:
    """The records of reservations made before a restart and never confirmed (``clear=0`` keeps them)."""
    commands = {
        f"re{i}": ("event.offline.get", {"process_id": pid, "clear": 0, "limit": limit * len(OFFLINE_EVENTS)})
        for i, pid in enumerate(process_ids)
    }
    batch = _read(client, commands, limit * len(OFFLINE_EVENTS))
    batch.process_ids = list(process_ids)
    return batch


def clear_offline_batches(client: BatchClient, process_ids: list[str]) -> int:
    """Confirm reservations (``event.offline.clear``); returns HTTP requests used.

    Never sends an empty ``process_id``: Bitrix24 would delete every unreserved record of the app.
    """
    wanted = [pid for pid in process_ids if pid and pid.strip()]
    if not wanted:
        return 0
    outcome = client.batch(
        {f"clear{i}": ("event.offline.clear", {"process_id": pid}) for i, pid in enumerate(wanted)}
    )
    _raise_errors(outcome.errors)
    return outcome.requests


def keep_matching(client: BatchClient, ids: list[int], filter: Mapping[str, Any]) -> tuple[list[int], int]:
    """The IDs among ``ids`` that match a ``crm.activity.list`` filter (≤ 2,500 per request)."""
    if not ids or not filter:
        return ids, 0
    commands = {
        f"m{i}": (
            "crm.activity.list",
            {"filter": {**filter, "@ID": ids[i : i + PAGE_SIZE]}, "select": ["ID"], "start": -1},
        )
        for i in range(0, len(ids), PAGE_SIZE)
    }
    outcome = client.batch(commands)
    _raise_errors(outcome.errors)
    found = {int(row["ID"]) for key in commands for row in rows_of(outcome.results.get(key))}
    return [i for i in ids if i in found], outcome.requests


class OfflineEventsFeed:
    """The ``offline_events`` source as a :class:`~airflow_provider_b24.changes.feed.ChangeFeed`.

    State: ``{"source": "offline_events", "bound": true, "pending": [process IDs]}``.

    :param client: a hook or client authorised as an application (OAuth).
    :param filter: extra ``crm.activity.list`` filter; changed IDs are kept only if they match it
        (one more request per non-empty poll). Deletions are always reported.
    """

    source = "offline_events"

    def __init__(
        self,
        client: BatchClient,
        *,
        filter: Mapping[str, Any] | None = None,
        limit: int = MAX_IDS_PER_EVENT,
        per_event_limit: int = OFFLINE_LIMIT,
    ) -> None:
        self.client = client
        self.filter = dict(filter or {})
        self.limit = limit
        self.per_event_limit = per_event_limit

    def start(self) -> dict[str, Any]:
        """Bind the offline handlers (the queue starts recording from now on)."""
        ensure_offline_handlers(self.client)
        return {"source": self.source, "bound": True, "pending": []}

    def poll(self, state: Mapping[str, Any]) -> FeedPoll:
        """Re-read unconfirmed reservations, else reserve new records; one request when idle."""
        requests = 0
        if not state.get("bound"):
            ensure_offline_handlers(self.client)
            requests += 2
        pending = [str(p) for p in (state.get("pending") or []) if p]
        if pending:
            batch = reread_offline_batches(self.client, pending, limit=self.per_event_limit)
        else:
            batch = reserve_offline_changes(self.client, limit=self.per_event_limit)
        requests += batch.requests
        ids = batch.ids
        if self.filter and ids:
            ids, used = keep_matching(self.client, ids, self.filter)
            requests += used
        changes = split_changes(ids, batch.deleted_ids, limit=self.limit)
        after = {"source": self.source, "bound": True, "pending": []}
        reserved = {**after, "pending": batch.process_ids} if batch.process_ids else None
        return FeedPoll(
            changes=changes,
            state=after,
            reserved=reserved,
            requests=requests,
            more=batch.full,
            cursor={"process_ids": list(batch.process_ids)},
            commit_token=list(batch.process_ids),
        )

    def commit(self, poll: FeedPoll) -> int:
        """Confirm the poll's reservations (delete the delivered records from the queue)."""
        return clear_offline_batches(self.client, poll.commit_token)


__all__ = [
    "OFFLINE_EVENTS",
    "OFFLINE_LIMIT",
    "WRONG_AUTH_TYPE_HELP",
    "OfflineBatch",
    "OfflineEventsFeed",
    "clear_offline_batches",
    "ensure_offline_handlers",
    "explain",
    "keep_matching",
    "merge_offline_records",
    "reread_offline_batches",
    "reserve_offline_changes",
]
