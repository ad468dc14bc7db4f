"""Reading one window: the raw rows of ``crm.activity.list``, in ascending ID order, each ID once.

No Airflow here (layer 2).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Final, Protocol, runtime_checkable

__all__ = ["LIST_METHOD", "SupportsIterList", "iter_window_rows", "requests_so_far"]

LIST_METHOD: Final = "crm.activity.list"


@runtime_checkable
class SupportsIterList(Protocol):
    """What the export needs from a client: :class:`~airflow_provider_b24.client.Bitrix24Client` fits."""

    @property
    def stats(self) -> Any: ...

    def iter_list(self, method: str, params: Mapping[str, Any] | None = ...) -> Iterator[dict[str, Any]]: ...


def requests_so_far(client: Any) -> int:
    """The client's HTTP request count so far (``client.stats.requests``; 0 when it has none)."""
    stats = getattr(client, "stats", None)
    return int(getattr(stats, "requests", 0) or 0)


def iter_window_rows(
    client: SupportsIterList,
    filter: Mapping[str, Any],
    select: Sequence[str],
    *,
    duplicates: list[int] | None = None,
) -> Iterator[dict[str, Any]]:
    """Raw rows of ``crm.activity.list`` for ``filter``, in ascending ID order, each ID once.

    Uses the client's keyset pagination (``order {"ID": "ASC"}``; the client adds ``>ID`` and
    ``start=-1`` and chains 50 pages per batch). The client yields only IDs above its cursor, so an
    activity listed twice (a ``BINDINGS`` filter joins one activity to several owners) comes once.

    :param duplicates: deprecated and ignored (0.1.0 counted repeats here; the client's paging
        already drops them, so the count was always 0).
    """
    if duplicates is not None:
        warnings.warn(
            "iter_window_rows(duplicates=...) is deprecated and ignored: the client's keyset paging "
            "yields each ID once",
            DeprecationWarning,
            stacklevel=2,
        )
    params = {"filter": dict(filter), "select": list(select), "order": {"ID": "ASC"}}
    return client.iter_list(LIST_METHOD, params)
