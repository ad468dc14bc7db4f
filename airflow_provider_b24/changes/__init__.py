"""Change feeds of CRM activities, without Airflow: what changed since a cursor, as sets of IDs.

Two sources, one interface (:class:`~.feed.ChangeFeed`): ``"poll"`` reads ``crm.activity.list`` by a
``LAST_UPDATED`` cursor (any connection; deletions are invisible), ``"offline_events"`` reads the
portal's offline event queue (OAuth applications only; deletions included). The Airflow adapter is
:class:`airflow_provider_b24.triggers.activity_changes.Bitrix24ActivityChangesTrigger`.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_provider_b24.changes.arguments import (
        SOURCES,
        validate_filter,
        validate_source,
        validate_start_from,
    )
    from airflow_provider_b24.changes.changeset import MAX_IDS_PER_EVENT, ChangeSet, split_changes
    from airflow_provider_b24.changes.feed import ChangeFeed, FeedPoll
    from airflow_provider_b24.changes.offline import (
        OFFLINE_EVENTS,
        OfflineBatch,
        OfflineEventsFeed,
        clear_offline_batches,
        ensure_offline_handlers,
        merge_offline_records,
        reserve_offline_changes,
    )
    from airflow_provider_b24.changes.poll import PollCursor, PollFeed, PollResult, poll_changes, portal_now
    from airflow_provider_b24.changes.sources import make_feed

#: Public name -> the module defining it. Imported on first use (PEP 562): the triggerer imports
#: ``changes.arguments`` on its event loop, which must not pull in the REST client.
_WHERE = {
    "SOURCES": "arguments",
    "validate_filter": "arguments",
    "validate_source": "arguments",
    "validate_start_from": "arguments",
    "MAX_IDS_PER_EVENT": "changeset",
    "ChangeSet": "changeset",
    "split_changes": "changeset",
    "ChangeFeed": "feed",
    "FeedPoll": "feed",
    "make_feed": "sources",
    "OFFLINE_EVENTS": "offline",
    "OfflineBatch": "offline",
    "OfflineEventsFeed": "offline",
    "clear_offline_batches": "offline",
    "ensure_offline_handlers": "offline",
    "merge_offline_records": "offline",
    "reserve_offline_changes": "offline",
    "PollCursor": "poll",
    "PollFeed": "poll",
    "PollResult": "poll",
    "poll_changes": "poll",
    "portal_now": "poll",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{module}"), name)


__all__ = [
    "MAX_IDS_PER_EVENT",
    "OFFLINE_EVENTS",
    "SOURCES",
    "ChangeFeed",
    "ChangeSet",
    "FeedPoll",
    "OfflineBatch",
    "OfflineEventsFeed",
    "PollCursor",
    "PollFeed",
    "PollResult",
    "clear_offline_batches",
    "ensure_offline_handlers",
    "make_feed",
    "merge_offline_records",
    "poll_changes",
    "portal_now",
    "reserve_offline_changes",
    "split_changes",
    "validate_filter",
    "validate_source",
    "validate_start_from",
]
