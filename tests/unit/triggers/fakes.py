"""Fakes for trigger unit tests: a portal whose hooks' ``batch`` serves ``crm.activity.list`` by ``@ID``,
and the triggerer's channel to its supervisor."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from airflow.sdk.exceptions import ErrorType
from airflow.sdk.execution_time.comms import (
    ConnectionResult,
    ErrorResponse,
    GetConnection,
    GetVariable,
    MaskSecret,
    PutVariable,
    VariableResult,
)

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
    """``batch`` for ``crm.activity.list`` with an ``@ID`` filter, served from a :class:`Portal`.

    Built with what the trigger resolved: ``connection`` (the Airflow connection) and ``task_sdk``;
    ``built_in`` is the thread that built it.
    """

    def __init__(
        self, portal: Portal, bitrix24_conn_id: str, *, connection: Any = None, task_sdk: Any = None
    ) -> None:
        self.portal = portal
        self.conn_id = bitrix24_conn_id
        self.connection = connection
        self.task_sdk = task_sdk
        self.built_in = threading.get_ident()
        self.closed = False
        portal.hooks.append(self)

    def get_settings(self) -> Any:
        """Settings of the resolved connection: only what the poller reads (rate limit 0: unknown, so
        the tests' polls are paced by their intervals alone)."""
        assert self.connection is not None, "the hook must be handed its resolved connection"
        return SimpleNamespace(config=SimpleNamespace(rate_limit=0.0), secrets=[])

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


class SupervisorChannel:
    """A fake of the triggerer's channel to its supervisor (``task_runner.SUPERVISOR_COMMS``).

    Connections and Variables live in dicts. Every ``asend`` is recorded with the thread it ran on
    (``asends``: ``(message type, thread id)``). The synchronous ``send`` behaves like Airflow 3.1's
    on the event loop's thread: refused at once (asgiref's ``async_to_sync`` refuses a thread with a
    running loop; nothing is written). From any other thread it is the apache/airflow#64620 hazard:
    recorded in ``sync_sends`` and refused, so a test can assert that none happened.
    """

    def __init__(self) -> None:
        self.connections: dict[str, dict[str, Any]] = {}
        self.variables: dict[str, str] = {}
        self.masked: list[str] = []
        self.asends: list[tuple[str, int]] = []
        self.sync_sends: list[tuple[str, int]] = []

    async def asend(self, msg: Any) -> Any:
        self.asends.append((type(msg).__name__, threading.get_ident()))
        await asyncio.sleep(0)  # a real exchange waits for the supervisor's answer
        return self.answer(msg)

    def answer(self, msg: Any) -> Any:
        """The supervisor's answer to ``msg``."""
        if isinstance(msg, GetConnection):
            conn = self.connections.get(msg.conn_id)
            if conn is None:
                return ErrorResponse(error=ErrorType.CONNECTION_NOT_FOUND, detail={"conn_id": msg.conn_id})
            fields = {k: conn.get(k) for k in ("host", "login", "password", "port")}
            extra = conn.get("extra")
            return ConnectionResult(
                conn_id=msg.conn_id,
                conn_type=conn["conn_type"],
                schema=None,
                extra=None if extra is None else json.dumps(extra),
                **fields,
            )
        if isinstance(msg, GetVariable):
            if msg.key not in self.variables:
                return ErrorResponse(error=ErrorType.VARIABLE_NOT_FOUND, detail={"key": msg.key})
            return VariableResult(key=msg.key, value=self.variables[msg.key])
        if isinstance(msg, PutVariable):
            self.variables[msg.key] = str(msg.value)
            return None
        if isinstance(msg, MaskSecret):
            self.masked.append(str(msg.value))
            return None
        raise AssertionError(f"unexpected message {msg!r}")

    def send(self, msg: Any) -> Any:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            self.sync_sends.append((type(msg).__name__, threading.get_ident()))
            raise AssertionError(f"synchronous send of {type(msg).__name__} from a worker thread") from None
        raise RuntimeError("You cannot use AsyncToSync in the same thread as an async event loop")

    def threads(self) -> set[int]:
        """The threads ``asend`` ran on."""
        return {thread for _type, thread in self.asends}

    def sent(self, kind: str) -> int:
        """How many ``asend`` calls sent a ``kind`` message (``"GetConnection"``...)."""
        return sum(1 for name, _thread in self.asends if name == kind)
