"""A fake portal for trigger unit tests: hooks whose ``batch`` serves ``crm.activity.list`` by ``@ID``."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

SELECT_ONLY = {"COMMUNICATIONS", "FILES", "BINDINGS", "WEBDAV_ELEMENTS", "STORAGE_ELEMENT_IDS"}


@dataclass
class FakeBatchResult:
    results: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, Exception] = field(default_factory=dict)
    requests: int = 1


def _row(activity_id: int, completed: bool = False) -> dict[str, Any]:
    return {"ID": str(activity_id), "SUBJECT": f"Call {activity_id}", "COMPLETED": "Y" if completed else "N"}


class Portal:
    """What the fake hooks serve: rows, queued errors, a per-request callback, a delay."""

    def __init__(self) -> None:
        self.rows: dict[int, dict[str, Any]] = {}
        self.requests = 0
        #: (loop-independent monotonic time, IDs asked, select sent) per request.
        self.log: list[tuple[float, list[int], list[str]]] = []
        #: requests naming one of these fields are refused (HTTP 400).
        self.refused_fields: set[str] = set()
        self.raise_next: list[Exception] = []
        self.threads: set[int] = set()
        self.hooks: list[FakeHook] = []
        self.delay = 0.0
        self.on_request: Any = None


class FakeHook:
    """``batch`` for ``crm.activity.list`` with an ``@ID`` filter, served from a :class:`Portal`."""

    def __init__(self, portal: Portal, bitrix24_conn_id: str) -> None:
        self.portal = portal
        self.conn_id = bitrix24_conn_id
        self.closed = False
        portal.hooks.append(self)

    def batch(self, commands: Mapping[str, tuple[str, Mapping[str, Any]]], *, halt: bool = False) -> Any:
        portal = self.portal
        portal.threads.add(threading.get_ident())
        portal.requests += 1
        asked = [i for _m, params in commands.values() for i in params["filter"]["@ID"]]
        select = list(next(iter(commands.values()))[1]["select"])
        portal.log.append((time.monotonic(), asked, select))
        if portal.on_request is not None:
            portal.on_request(portal)
        if portal.delay:
            time.sleep(portal.delay)  # a slow portal, in the worker thread
        if portal.raise_next:
            raise portal.raise_next.pop(0)
        refused = portal.refused_fields & set(select)
        if refused:
            from airflow_provider_b24.exceptions import Bitrix24BadRequest

            raise Bitrix24BadRequest(f"unknown field {sorted(refused)[0]}", http_status=400)
        return FakeBatchResult(
            results={
                key: [
                    _select(portal.rows[i], params["select"])
                    for i in params["filter"]["@ID"]
                    if i in portal.rows
                ]
                for key, (_method, params) in commands.items()
            }
        )

    def close(self) -> None:
        self.closed = True


def _select(row: dict[str, Any], select: list[str]) -> dict[str, Any]:
    """What a portal returns for ``select`` (``*``: every field but the select-only ones)."""
    if "*" in select:
        return {k: v for k, v in row.items() if k not in SELECT_ONLY or k in select}
    return {k: v for k, v in row.items() if k in select}


def _row(activity_id: int, completed: bool = False) -> dict[str, Any]:
    return {"ID": str(activity_id), "SUBJECT": f"Call {activity_id}", "COMPLETED": "Y" if completed else "N"}
