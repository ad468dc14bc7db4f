"""The change feed's arguments: checked where a DAG is parsed, and cheap to import.

The triggerer imports the trigger module and builds the trigger on its event loop, so nothing here
imports the REST client (``requests``) unless an argument is wrong.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Mapping
from typing import Any, Final

SOURCES: Final = ("poll", "offline_events")


def config_error(message: str) -> Exception:
    """A :class:`~airflow_provider_b24.exceptions.Bitrix24ConfigError` (imported only when needed)."""
    from airflow_provider_b24.client.errors import Bitrix24ConfigError

    return Bitrix24ConfigError(message)


def validate_source(source: Any) -> str:
    """``source`` if it is one of :data:`SOURCES`, else a ``Bitrix24ConfigError`` naming the choices."""
    if source not in SOURCES:
        choices = ", ".join(repr(s) for s in SOURCES)
        raise config_error(f"source must be one of {choices}, got {source!r}")
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
                raise config_error(f"{where} keys must be strings, got {key!r}")
            _json_plain(item, f"{where}[{key!r}]")
        return
    raise config_error(
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
        raise config_error(
            "filter must be a dict (a crm.activity.list filter) or None, "
            f"got {type(value).__name__} {value!r}"
        )
    _json_plain(value, "filter")
    for key in value:
        if key.lstrip("=!<>@%").upper() == "LAST_UPDATED":
            raise config_error(
                f"filter must not constrain LAST_UPDATED (key {key!r}): the change feed's cursor does; "
                "use start_from to choose where it begins"
            )
    return value


def validate_start_from(value: Any) -> str | None:
    """An ISO 8601 datetime string (with or without offset) or None; ``Bitrix24ConfigError`` otherwise."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise config_error(
            f"start_from must be an ISO 8601 string such as '2026-01-31T09:00:00+03:00' or None, "
            f"got {type(value).__name__} {value!r}"
        )
    try:
        dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise config_error(
            f"start_from must be an ISO 8601 datetime such as '2026-01-31T09:00:00+03:00', got {value!r}"
        ) from None
    return value.strip()


def feed_identity(*, conn_id: str, source: str, filter: Mapping[str, Any] | None) -> str:
    """A short stable digest of what the feed reads (names its durable cursor).

    ``poll_interval`` is not part of it: changing the interval keeps the cursor. A different
    connection, source or filter is a different feed with its own cursor.
    """
    text = json.dumps({"conn_id": conn_id, "source": source, "filter": filter}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


__all__ = [
    "SOURCES",
    "config_error",
    "feed_identity",
    "validate_filter",
    "validate_source",
    "validate_start_from",
]
