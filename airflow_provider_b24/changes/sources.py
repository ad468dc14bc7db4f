"""Choose a change feed by its ``source`` name (``"poll"`` or ``"offline_events"``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from airflow_provider_b24.changes.arguments import validate_source
from airflow_provider_b24.changes.changeset import MAX_IDS_PER_EVENT
from airflow_provider_b24.changes.feed import ChangeFeed
from airflow_provider_b24.changes.offline import OfflineEventsFeed
from airflow_provider_b24.changes.poll import PollFeed


def make_feed(
    client: Any,
    *,
    source: str,
    filter: Mapping[str, Any] | None = None,
    start_from: str | None = None,
    limit: int = MAX_IDS_PER_EVENT,
) -> ChangeFeed:
    """The feed for ``source`` over ``client`` (a hook or a client)."""
    if validate_source(source) == "poll":
        return PollFeed(client, filter=filter, start_from=start_from, limit=limit)
    return OfflineEventsFeed(client, filter=filter, limit=limit)


__all__ = ["make_feed"]
