"""Bitrix24ActivityTrigger: exact JSON-plain serialize(), and run() against a fake portal.

``run()`` against the real emulator over HTTP (the activity completed while the trigger waits) is
in tests/integration/test_sensor_emulator.py.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Any

import pytest
from airflow.triggers.base import TriggerEvent

from airflow_provider_b24.activities import format_ids
from airflow_provider_b24.activities.waiting import evaluate_activities, validate_until
from airflow_provider_b24.exceptions import (
    Bitrix24AccessDenied,
    Bitrix24AuthError,
    Bitrix24ConfigError,
    Bitrix24OperationTimeLimit,
    Bitrix24RateLimited,
    Bitrix24ServerError,
    Bitrix24TransportError,
)
from airflow_provider_b24.triggers.activity import Bitrix24ActivityTrigger, default_first_poll_delay
from tests.unit.triggers.fakes import Portal, _row

CLASSPATH = "airflow_provider_b24.triggers.activity.Bitrix24ActivityTrigger"


def trigger(**kwargs: Any) -> Bitrix24ActivityTrigger:
    kwargs.setdefault("activity_ids", [1, 2])
    kwargs.setdefault("poll_interval", 0.05)
    kwargs.setdefault("first_poll_delay", 0)  # these tests are about the poll loop, not its start
    return Bitrix24ActivityTrigger(**kwargs)


async def collect(t: Bitrix24ActivityTrigger) -> list[TriggerEvent]:
    """All events the trigger yields (it must stop after the first)."""
    return await asyncio.wait_for(_collect(t), timeout=10)


async def _collect(t: Bitrix24ActivityTrigger) -> list[TriggerEvent]:
    return [event async for event in t.run()]


# -- serialize ------------------------------------------------------------------------------------


def test_serialize_exact() -> None:
    t = Bitrix24ActivityTrigger(
        activity_ids=[3, 1, 2], bitrix24_conn_id="b24", until="exists", poll_interval=30, select=["SUBJECT"]
    )
    assert t.serialize() == (
        CLASSPATH,
        {
            "activity_ids": [3, 1, 2],
            "bitrix24_conn_id": "b24",
            "until": "exists",
            "poll_interval": 30.0,
            "select": ["SUBJECT"],
            "first_poll_delay": None,
        },
    )


def test_serialize_defaults() -> None:
    assert Bitrix24ActivityTrigger(activity_ids=[1]).serialize() == (
        CLASSPATH,
        {
            "activity_ids": [1],
            "bitrix24_conn_id": "bitrix24_default",
            "until": "completed",
            "poll_interval": 60.0,
            "select": None,
            "first_poll_delay": None,
        },
    )


def test_default_first_poll_delay_rule() -> None:
    """max(poll_interval, 10 s): the sensor just poked; see docs/sensor.md, "The deferral race"."""
    assert default_first_poll_delay(2) == 10.0
    assert default_first_poll_delay(0.05) == 10.0
    assert default_first_poll_delay(60) == 60.0


def test_serialize_is_json_plain_and_rebuilds_the_trigger() -> None:
    classpath, kwargs = trigger(select=["SUBJECT", "COMPLETED"]).serialize()
    assert json.loads(json.dumps(kwargs)) == kwargs
    module, _, name = classpath.rpartition(".")
    cls = getattr(__import__(module, fromlist=[name]), name)
    assert cls(**kwargs).serialize() == (classpath, kwargs)


def test_serialize_survives_airflow_serde() -> None:
    """Since Airflow 3.2 the task runner ships trigger kwargs through ``airflow.sdk.serde``."""
    from airflow_provider_b24._compat import serde_deserialize, serde_serialize

    _, kwargs = trigger().serialize()
    assert serde_deserialize(json.loads(json.dumps(serde_serialize(kwargs)))) == kwargs


def test_serialize_never_contains_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_BITRIX24_DEFAULT",
        json.dumps({"conn_type": "bitrix24", "host": "https://p.bitrix24.com", "password": "s3cr3t"}),
    )
    assert "s3cr3t" not in json.dumps(trigger().serialize())


# -- helpers --------------------------------------------------------------------------------------


def test_helpers() -> None:
    assert validate_until("exists") == "exists"
    with pytest.raises(ValueError, match="until must be one of"):
        validate_until("COMPLETED")
    assert format_ids(list(range(25)), limit=3) == "0, 1, 2, ... and 22 more"
    status = evaluate_activities([_row(1, True), _row(2)], [3], "completed")
    assert (status.done, status.missing_ids, status.pending_ids) == (False, [3], [2])
    assert evaluate_activities([_row(1), _row(2)], [], "exists").done is True
    assert evaluate_activities([{"ID": 1, "COMPLETED": True}], [], "completed").done is True


# -- run ------------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_run_yields_one_success_event_once_completed(portal: Portal) -> None:
    def progress(p: Portal) -> None:  # one more step per poll
        if p.requests == 1:
            p.rows = {1: _row(1)}
        elif p.requests == 2:
            p.rows = {1: _row(1, True), 2: _row(2)}
        elif p.requests == 3:
            p.rows[2] = _row(2, True)

    portal.on_request = progress
    events = await collect(trigger(activity_ids=[2, 1]))
    assert len(events) == 1
    assert events[0].payload == {"status": "success", "activities": [_row(2, True), _row(1, True)]}
    assert json.loads(json.dumps(events[0].payload)) == events[0].payload
    assert portal.requests == 3
    assert (
        len(portal.hooks) == 1 and portal.hooks[0].closed is True
    )  # one hook for the connection, closed when the last trigger leaves
    assert portal.hooks[0].conn_id == "bitrix24_default"
    assert threading.get_ident() not in portal.threads  # the sync client ran in a worker thread


@pytest.mark.asyncio
async def test_run_exists_mode(portal: Portal) -> None:
    portal.on_request = lambda p: p.rows.update({1: _row(1)}) if p.requests == 3 else None
    events = await collect(trigger(activity_ids=[1], until="exists"))
    assert events == [TriggerEvent({"status": "success", "activities": [_row(1)]})]
    assert portal.requests == 3


@pytest.mark.asyncio
async def test_run_does_not_block_the_event_loop(portal: Portal) -> None:
    portal.rows = {1: _row(1, True)}
    portal.delay = 0.3
    ticks = 0
    done = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            await asyncio.sleep(0.01)

    ticking = asyncio.create_task(ticker())
    events = await collect(trigger(activity_ids=[1]))
    done.set()
    await ticking
    assert events[0].payload["status"] == "success"
    assert ticks >= 10  # the loop kept running while the request slept 0.3 s


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "error",
    [
        Bitrix24ServerError("boom", code="INTERNAL_SERVER_ERROR", http_status=500),
        Bitrix24RateLimited("slow down", code="QUERY_LIMIT_EXCEEDED", http_status=503),
        Bitrix24TransportError("reset", retryable=True),
    ],
)
async def test_run_keeps_polling_through_transient_errors(portal: Portal, error: Exception) -> None:
    portal.rows = {1: _row(1, True)}
    portal.raise_next = [error, error]
    events = await collect(trigger(activity_ids=[1]))
    assert [e.payload["status"] for e in events] == ["success"]
    assert portal.requests == 3


@pytest.mark.asyncio
async def test_run_waits_past_operation_time_limit_reset(portal: Portal) -> None:
    reset_at = time.time() + 0.3
    times: list[float] = []
    portal.rows = {1: _row(1, True)}
    portal.raise_next = [Bitrix24OperationTimeLimit("blocked", http_status=429, reset_at=reset_at)]
    portal.on_request = lambda p: times.append(time.time())
    events = await collect(trigger(activity_ids=[1], poll_interval=0.01))
    assert [e.payload["status"] for e in events] == ["success"]
    assert len(times) == 2
    assert times[1] >= reset_at  # no request before the portal's reset time


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "error",
    [
        Bitrix24AuthError("Invalid token", code="INVALID_CREDENTIALS", http_status=401),
        Bitrix24AccessDenied("Access denied", code="ACCESS_DENIED", http_status=403),
        Bitrix24ConfigError("host is required"),
        RuntimeError("unexpected"),
    ],
)
async def test_run_yields_one_error_event_for_unrecoverable_errors(portal: Portal, error: Exception) -> None:
    portal.raise_next = [error]
    events = await collect(trigger(activity_ids=[1]))
    outcome = "unexpected" if isinstance(error, RuntimeError) else "fail"
    assert [e.payload for e in events] == [
        {"status": "error", "message": f"{type(error).__name__}: {error}", "outcome": outcome}
    ]
    assert portal.requests == 1
    assert portal.hooks[0].closed is True


@pytest.mark.asyncio
async def test_run_error_when_hook_cannot_be_built(monkeypatch: pytest.MonkeyPatch) -> None:
    """A connection without a portal URL: the real hook refuses it (on the event loop), no request."""
    monkeypatch.setenv(
        "AIRFLOW_CONN_NOHOST", json.dumps({"conn_type": "bitrix24", "login": "1", "password": "x"})
    )
    events = await collect(trigger(bitrix24_conn_id="nohost"))
    assert [e.payload["status"] for e in events] == ["error"]
    assert events[0].payload["message"].startswith("Bitrix24ConfigError: ")
    assert "host" in events[0].payload["message"]


@pytest.mark.asyncio
async def test_cancellation_closes_the_hook(portal: Portal) -> None:
    polled_twice = threading.Event()
    portal.on_request = lambda p: polled_twice.set() if p.requests >= 2 else None
    task = asyncio.create_task(_collect(trigger(activity_ids=[1])))
    assert await asyncio.to_thread(polled_twice.wait, 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert portal.hooks[0].closed is True


@pytest.mark.asyncio
async def test_empty_ids_succeed_at_once(portal: Portal) -> None:
    events = await collect(trigger(activity_ids=[]))
    assert events == [TriggerEvent({"status": "success", "activities": []})]
    assert portal.requests == 0


def test_module_import_is_light() -> None:
    """The triggerer imports the trigger's module on its event loop: the client (and ``requests``
    through it) must be imported in the worker thread, not there."""
    import subprocess
    import sys

    code = (
        "import sys, airflow_provider_b24.triggers.activity as m; "
        "print(sorted(n for n in sys.modules if n.startswith('airflow_provider_b24.')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    loaded = out.strip().splitlines()[-1]
    assert "airflow_provider_b24.client" not in loaded
    assert "airflow_provider_b24.hooks.bitrix24" not in loaded
    assert "airflow_provider_b24.activities" not in loaded
