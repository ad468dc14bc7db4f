"""Change feeds of CRM activities, without Airflow: what changed since a cursor, as sets of IDs.

Two sources, one interface (:class:`~.feed.ChangeFeed`): ``"poll"`` reads ``crm.activity.list`` by a
``LAST_UPDATED`` cursor (any connection; deletions are invisible), ``"offline_events"`` reads the
portal's offline event queue (OAuth applications only; deletions included). The Airflow adapter is
:class:`airflow_provider_b24.triggers.activity_changes.Bitrix24ActivityChangesTrigger`.
"""

from __future__ import annotations

from airflow_provider_b24.changes.changeset import MAX_IDS_PER_EVENT, ChangeSet, split_changes
from airflow_provider_b24.changes.feed import (
    SOURCES,
    ChangeFeed,
    FeedPoll,
    make_feed,
    validate_filter,
    validate_source,
    validate_start_from,
)
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
