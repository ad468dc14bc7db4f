"""Where a change-feed watcher keeps its cursor across triggerer restarts.

* Airflow 3.3+: the watched asset's state store (``BaseEventTrigger.asset_state_store``, injected by
  the triggerer before ``run()``; AIP-103), under the key ``bitrix24_changes.<identity>``;
* Airflow 3.1 / 3.2 (no asset state store), or a trigger that watches several assets: the Airflow
  Variable ``bitrix24_changes__<conn_id>__<identity>``.

``identity`` is a digest of the connection ID, the source and the filter
(:func:`airflow_provider_b24.changes.feed.feed_identity`), so two watchers of one portal never share a
cursor, and changing ``poll_interval`` keeps it. Values are JSON objects. Store errors propagate: the
trigger waits them out (a cursor must not silently fall back to memory and lose changes).
"""

from __future__ import annotations

import json
import re
from typing import Any, Protocol

from airflow_provider_b24.triggers.task_sdk import aget_variable, aset_variable

KEY_PREFIX = "bitrix24_changes"


class CursorStore(Protocol):
    """Async load/save of one JSON object."""

    description: str

    async def load(self) -> dict[str, Any] | None: ...

    async def save(self, state: dict[str, Any]) -> None: ...


def variable_name(conn_id: str, identity: str) -> str:
    """``bitrix24_changes__<conn_id>__<identity>`` (characters other than ``[A-Za-z0-9_.-]`` become ``_``)."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", conn_id)
    return f"{KEY_PREFIX}__{safe}__{identity}"


def state_key(identity: str) -> str:
    """The asset-state-store key: ``bitrix24_changes.<identity>``."""
    return f"{KEY_PREFIX}.{identity}"


def _decode(raw: Any, where: str) -> dict[str, Any] | None:
    if raw in (None, ""):
        return None
    value = json.loads(raw) if isinstance(raw, str | bytes) else raw
    if not isinstance(value, dict):
        raise ValueError(f"{where} does not hold a JSON object: {value!r:.200}")
    return value


class AssetStateCursorStore:
    """The cursor in the watched asset's state store (Airflow 3.3+)."""

    def __init__(self, accessors: Any, key: str) -> None:
        self.accessors = accessors
        self.key = key
        self.description = f"the asset state store (key {key!r})"

    async def load(self) -> dict[str, Any] | None:
        return _decode(await self.accessors.aget(self.key), self.description)

    async def save(self, state: dict[str, Any]) -> None:
        await self.accessors.aset(self.key, state)


class VariableCursorStore:
    """The cursor in an Airflow Variable (Airflow 3.1 / 3.2).

    In the triggerer the Variable is read and written with the supervisor channel's ``asend`` on the
    event loop (:func:`~airflow_provider_b24.triggers.task_sdk.aget_variable`), the way the runner
    itself talks to its supervisor. The Task SDK's synchronous ``Variable.get/set`` from a worker
    thread can interleave with the runner's own messages on Airflow 3.1.8 and kill the trigger runner
    ("Response read out of order!", apache/airflow#64620); seen in ``make demo``. Outside a triggerer
    (scripts, tests) the synchronous API is used, in a worker thread.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.description = f"the Airflow Variable {name!r}"

    async def load(self) -> dict[str, Any] | None:
        return _decode(await aget_variable(self.name), self.description)

    async def save(self, state: dict[str, Any]) -> None:
        await aset_variable(self.name, json.dumps(state, sort_keys=True), _DESCRIPTION)


_DESCRIPTION = "Bitrix24 change feed cursor (written by the triggerer)"


class MemoryCursorStore:
    """A cursor in process memory (tests, scripts): lost with the process."""

    description = "process memory"

    def __init__(self, state: dict[str, Any] | None = None) -> None:
        self.state = state
        self.saves: list[dict[str, Any]] = []

    async def load(self) -> dict[str, Any] | None:
        return None if self.state is None else dict(self.state)

    async def save(self, state: dict[str, Any]) -> None:
        self.state = dict(state)
        self.saves.append(dict(state))


async def choose_store(asset_state_store: Any, *, conn_id: str, identity: str, log: Any) -> CursorStore:
    """The asset state store when the triggerer injected one for exactly one asset, else the Variable."""
    if asset_state_store is not None:
        store = AssetStateCursorStore(asset_state_store, state_key(identity))
        try:
            await asset_state_store.aget(store.key)
        except ValueError as error:  # several watched assets: no single accessor to pick
            log.warning(
                "Bitrix24 change feed: the asset state store cannot be used (%s); "
                "keeping the cursor in an Airflow Variable instead",
                error,
            )
        else:
            return store
    return VariableCursorStore(variable_name(conn_id, identity))


__all__ = [
    "AssetStateCursorStore",
    "CursorStore",
    "MemoryCursorStore",
    "VariableCursorStore",
    "choose_store",
    "state_key",
    "variable_name",
]
