"""The interface both change sources share, and validation of the arguments that choose one.

A feed is driven by a caller that keeps its state durably (the trigger)::

    state = stored or feed.start()            # save it at once: "now" must survive a restart
    poll = feed.poll(state)                   # save poll.reserved at once, if not None
    for changes in poll.changes: deliver(changes.payload(...))
    feed.commit(poll); save(poll.state)       # only after delivery: at least once

``state`` and every payload are JSON-plain dicts.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from airflow_provider_b24.changes.changeset import MAX_IDS_PER_EVENT, ChangeSet
from airflow_provider_b24.client.errors import Bitrix24ConfigError

SOURCES: Final = ("poll", "offline_events")


@dataclass
class FeedPoll:
    """What one poll found.

    :ivar changes: the events to deliver (each ≤ 2,500 IDs), possibly none.
    :ivar state: the feed state once ``changes`` are delivered (and :meth:`ChangeFeed.commit` ran).
    :ivar reserved: a state to store *before* delivering (the offline queue's reservations), or None.
    :ivar requests: HTTP requests this poll used.
    :ivar more: the poll stopped at its limit: poll again at once.
    :ivar cursor: cursor details to put into each payload.
    :ivar commit_token: what :meth:`ChangeFeed.commit` needs (e.g. process IDs to clear).
    """

    changes: list[ChangeSet]
    state: dict[str, Any]
    reserved: dict[str, Any] | None = None
    requests: int = 0
    more: bool = False
    cursor: dict[str, Any] = field(default_factory=dict)
    commit_token: list[str] = field(default_factory=list)


class ChangeFeed(Protocol):
    """A source of activity changes (see the module docstring for the calling protocol)."""

    source: str

    def start(self) -> dict[str, Any]: ...

    def poll(self, state: Mapping[str, Any]) -> FeedPoll: ...

    def commit(self, poll: FeedPoll) -> int: ...


def validate_source(source: Any) -> str:
    """``source`` if it is one of :data:`SOURCES`, else a ``Bitrix24ConfigError`` naming the choices."""
    if source not in SOURCES:
        choices = ", ".join(repr(s) for s in SOURCES)
        raise Bitrix24ConfigError(f"source must be one of {choices}, got {source!r}")
    return str(source)


def _json_plain(value: Any, where: str) -> None:
    if value is None or isinstance(value, str | bool | int | float):
        return
    if isinstance(value, list):
        for index, item in enumerate(value):
            _json_plain(item, f"{where}[{index}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise Bitrix24ConfigError(f"{where} keys must be strings, got {key!r}")
            _json_plain(item, f"{where}[{key!r}]")
        return
    raise Bitrix24ConfigError(
        f"{where} must hold only JSON values (str, int, float, bool, None, lists, dicts), "
        f"got {type(value).__name__} {value!r}"
    )


def validate_filter(value: Any) -> dict[str, Any] | None:
    """A ``crm.activity.list`` filter to AND in: a JSON-plain dict without ``LAST_UPDATED`` keys.

    Tuples and sets are refused (Airflow hashes watcher kwargs as JSON; a tuple hashes differently
    after a round trip through the metadata DB, see apache/airflow#64625).
    """
    if value is None:
        return None
    if not isinstance(value, dict):
        raise Bitrix24ConfigError(
            "filter must be a dict (a crm.activity.list filter) or None, "
            f"got {type(value).__name__} {value!r}"
        )
    _json_plain(value, "filter")
    for key in value:
        if key.lstrip("=!<>@%").upper() == "LAST_UPDATED":
            raise Bitrix24ConfigError(
                f"filter must not constrain LAST_UPDATED (key {key!r}): the change feed's cursor does; "
                "use start_from to choose where it begins"
            )
    return value


def validate_start_from(value: Any) -> str | None:
    """An ISO 8601 datetime string (with or without offset) or None; ``Bitrix24ConfigError`` otherwise."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise Bitrix24ConfigError(
            f"start_from must be an ISO 8601 string such as '2026-01-31T09:00:00+03:00' or None, "
            f"got {type(value).__name__} {value!r}"
        )
    try:
        dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise Bitrix24ConfigError(
            f"start_from must be an ISO 8601 datetime such as '2026-01-31T09:00:00+03:00', got {value!r}"
        ) from None
    return value.strip()


def feed_identity(*, conn_id: str, source: str, filter: Mapping[str, Any] | None) -> str:
    """A short stable digest of what the feed reads (names its durable cursor).

    ``poll_interval`` is not part of it: changing the interval keeps the cursor. A different
    connection, source or filter is a different feed with its own cursor.
    """
    import hashlib

    text = json.dumps({"conn_id": conn_id, "source": source, "filter": filter}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def make_feed(
    client: Any,
    *,
    source: str,
    filter: Mapping[str, Any] | None = None,
    start_from: str | None = None,
    limit: int = MAX_IDS_PER_EVENT,
) -> ChangeFeed:
    """The feed for ``source`` over ``client`` (a hook or a client)."""
    from airflow_provider_b24.changes.offline import OfflineEventsFeed
    from airflow_provider_b24.changes.poll import PollFeed

    if validate_source(source) == "poll":
        return PollFeed(client, filter=filter, start_from=start_from, limit=limit)
    return OfflineEventsFeed(client, filter=filter, limit=limit)


__all__ = [
    "SOURCES",
    "ChangeFeed",
    "FeedPoll",
    "feed_identity",
    "make_feed",
    "validate_filter",
    "validate_source",
    "validate_start_from",
]
