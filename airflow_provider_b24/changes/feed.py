"""The interface both change sources share, and validation of the arguments that choose one.

A feed is driven by a caller that keeps its state durably (the trigger)::

    state = stored or feed.start()            # save it at once: "now" must survive a restart
    poll = feed.poll(state)                   # save poll.reserved at once, if not None
    for changes in poll.changes: deliver(changes.payload(...))
    feed.commit(poll); save(poll.state)       # only after delivery: at least once

``state`` and every payload are JSON-plain dicts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from airflow_provider_b24.changes.arguments import (
    SOURCES,
    feed_identity,
    validate_filter,
    validate_source,
    validate_start_from,
)
from airflow_provider_b24.changes.changeset import ChangeSet


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


__all__ = [
    "SOURCES",
    "ChangeFeed",
    "FeedPoll",
    "feed_identity",
    "validate_filter",
    "validate_source",
    "validate_start_from",
]
