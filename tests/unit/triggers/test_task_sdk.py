"""Triggers make no synchronous Task SDK call from a worker thread (apache/airflow#64620 on Airflow 3.1).

A fake of the triggerer's supervisor channel (:class:`~tests.unit.triggers.fakes.SupervisorChannel`)
is ``task_runner.SUPERVISOR_COMMS``, as in a real triggerer: it serves the connection and the
Variables, records the thread of every ``asend``, and records (and refuses) every synchronous
``send`` from a thread other than the event loop's, which is what crashes Airflow 3.1.8's trigger
runner. The shared poller and the change feed run against the emulator over HTTPS with OAuth
tokens that expire mid-run, so the token Variable is read and written while a poll is in its
worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from airflow.sdk import BaseHook
from airflow.sdk.execution_time import task_runner

from airflow_provider_b24.client import DEFAULT_REGISTRY
from airflow_provider_b24.hooks.token_store import variable_name
from airflow_provider_b24.testing import Bitrix24Emulator
from airflow_provider_b24.triggers import activity_changes
from airflow_provider_b24.triggers.activity import Bitrix24ActivityTrigger
from airflow_provider_b24.triggers.activity_changes import Bitrix24ActivityChangesTrigger
from airflow_provider_b24.triggers.change_cursor import MemoryCursorStore
from airflow_provider_b24.triggers.task_sdk import (
    EventLoopTaskSdk,
    aget_variable,
    amask_secrets,
    aset_variable,
    open_hook,
)
from tests.unit.triggers.fakes import Portal, SupervisorChannel, _row


@pytest.fixture
def channel(monkeypatch: pytest.MonkeyPatch) -> SupervisorChannel:
    fake = SupervisorChannel()
    monkeypatch.setattr(task_runner, "SUPERVISOR_COMMS", fake, raising=False)
    return fake


@pytest.fixture
def no_sync_get_connection(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Threads that called the synchronous ``BaseHook.get_connection`` (there must be none)."""
    calls: list[int] = []

    def refuse(cls: type, conn_id: str) -> Any:
        calls.append(threading.get_ident())
        raise AssertionError(f"synchronous get_connection({conn_id!r})")

    monkeypatch.setattr(BaseHook, "get_connection", classmethod(refuse))
    return calls


@pytest.fixture
def _fresh_limiters() -> Iterator[None]:
    DEFAULT_REGISTRY.clear()
    yield
    DEFAULT_REGISTRY.clear()


def trigger(ids: list[int], **kwargs: Any) -> Bitrix24ActivityTrigger:
    kwargs.setdefault("poll_interval", 0.05)
    kwargs.setdefault("first_poll_delay", 0)
    return Bitrix24ActivityTrigger(activity_ids=ids, **kwargs)


async def events_of(t: Any) -> list[Any]:
    return [event async for event in t.run()]


# -- the shared poller (fake portal) ----------------------------------------------------------------


@pytest.mark.asyncio
async def test_the_poller_resolves_its_connection_on_the_event_loop(
    portal: Portal,
    channel: SupervisorChannel,
    no_sync_get_connection: list[int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_BITRIX24_DEFAULT")  # only the supervisor knows it
    channel.connections["bitrix24_default"] = {"conn_type": "bitrix24", "host": "https://b24.example"}
    portal.rows = {i: _row(i) for i in (1, 2, 3)}
    polled_twice = threading.Event()

    def on_request(p: Portal) -> None:
        if p.requests == 2:
            p.rows = {i: _row(i, True) for i in (1, 2, 3)}
            polled_twice.set()

    portal.on_request = on_request
    loop_thread = threading.get_ident()
    results = await asyncio.wait_for(asyncio.gather(*(events_of(trigger([i])) for i in (1, 2, 3))), 10)
    assert [[e.payload["status"] for e in events] for events in results] == [["success"]] * 3
    assert channel.sent("GetConnection") == 1  # one hook for the three triggers' poller
    assert channel.threads() == {loop_thread}  # every exchange with the supervisor on the loop
    assert channel.sync_sends == [] and no_sync_get_connection == []
    (hook,) = portal.hooks
    assert hook.built_in == loop_thread and hook.connection.host == "https://b24.example"
    assert isinstance(hook.task_sdk, EventLoopTaskSdk) and hook.task_sdk.loop is asyncio.get_running_loop()
    assert portal.threads and loop_thread not in portal.threads  # the HTTP: in worker threads only


@pytest.mark.asyncio
async def test_an_unknown_connection_is_asked_on_the_loop_and_ends_every_trigger(
    portal: Portal, channel: SupervisorChannel, no_sync_get_connection: list[int]
) -> None:
    results = await asyncio.wait_for(
        asyncio.gather(*(events_of(trigger([i], bitrix24_conn_id="gone")) for i in (1, 2))), 10
    )
    assert [[e.payload["status"] for e in events] for events in results] == [["error"]] * 2
    assert all("gone" in events[0].payload["message"] for events in results)
    assert channel.sent("GetConnection") >= 1 and channel.threads() == {threading.get_ident()}
    assert channel.sync_sends == [] and no_sync_get_connection == [] and portal.requests == 0


# -- EventLoopTaskSdk and the async helpers ---------------------------------------------------------


@pytest.mark.asyncio
async def test_worker_threads_reach_the_supervisor_through_the_loop(channel: SupervisorChannel) -> None:
    sdk = EventLoopTaskSdk(loop=asyncio.get_running_loop())
    loop_thread = threading.get_ident()

    def in_a_worker() -> tuple[Any, Any]:
        missing = sdk.get_variable("bitrix24_token__x")
        sdk.set_variable("bitrix24_token__x", '{"refresh_token": "r1"}', "rotated")
        sdk.mask_secrets("r1", None, "")
        return missing, sdk.get_variable("bitrix24_token__x")

    missing, stored = await asyncio.to_thread(in_a_worker)
    assert (missing, stored) == (None, '{"refresh_token": "r1"}')
    sent = [name for name, _t in channel.asends]
    assert sent == ["GetVariable", "PutVariable", "MaskSecret", "GetVariable"]
    assert channel.threads() == {loop_thread} and channel.sync_sends == []
    assert channel.masked == ["r1"]


@pytest.mark.asyncio
async def test_a_call_on_the_loop_thread_is_refused_not_deadlocked(channel: SupervisorChannel) -> None:
    sdk = EventLoopTaskSdk(loop=asyncio.get_running_loop())
    with pytest.raises(RuntimeError, match="would block the loop"):
        sdk.get_variable("v")
    sdk.mask_secrets("on-the-loop")  # masks locally; nothing is sent from here
    assert channel.asends == [] and channel.sync_sends == []


@pytest.mark.asyncio
async def test_an_exchange_in_flight_survives_its_callers_cancellation(
    channel: SupervisorChannel, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On Airflow 3.1 a cancelled ``asend`` leaves its answer in the channel for the next request
    ("Response read out of order!"); the helpers shield the exchange so it is read to the end."""
    gate = asyncio.Event()
    finished: list[str] = []
    answer = channel.asend

    async def slow(msg: Any) -> Any:
        await gate.wait()
        result = await answer(msg)
        finished.append(type(msg).__name__)
        return result

    monkeypatch.setattr(channel, "asend", slow)
    caller = asyncio.create_task(aget_variable("v"))
    await asyncio.sleep(0.01)
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    gate.set()
    for _ in range(100):
        if finished:
            break
        await asyncio.sleep(0.01)
    assert finished == ["GetVariable"]


@pytest.mark.asyncio
async def test_outside_a_triggerer_the_sync_api_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    """``airflow dags test`` runs triggers in-line: its supervisor channel has no ``asend``."""
    monkeypatch.setattr(task_runner, "SUPERVISOR_COMMS", None, raising=False)
    stored: dict[str, str] = {}
    monkeypatch.setattr("airflow.sdk.Variable.get", lambda key, default=None: stored.get(key, default))
    monkeypatch.setattr("airflow.sdk.Variable.set", lambda key, value, **kw: stored.update({key: value}))
    sdk = EventLoopTaskSdk(loop=asyncio.get_running_loop())
    await aset_variable("a", "1", "d")
    assert await aget_variable("a") == "1"
    await asyncio.to_thread(sdk.set_variable, "b", "2", "d")
    assert await asyncio.to_thread(sdk.get_variable, "b") == "2" and stored == {"a": "1", "b": "2"}
    await amask_secrets("s3cr3t")  # local masker only: no channel


@pytest.mark.asyncio
async def test_open_hook_hands_the_resolved_connection_to_the_hook(
    channel: SupervisorChannel, no_sync_get_connection: list[int]
) -> None:
    channel.connections["b24"] = {
        "conn_type": "bitrix24",
        "host": "https://portal.example",
        "login": "7",
        "password": "webhook-code-0123",
    }
    hook = await open_hook("b24")
    settings = hook.get_settings()
    assert (settings.portal.base_url, settings.user_id, settings.webhook_code) == (
        "https://portal.example",
        "7",
        "webhook-code-0123",
    )
    assert "webhook-code-0123" in channel.masked  # the supervisor's masker was told, with asend
    assert channel.threads() == {threading.get_ident()} and channel.sync_sends == []
    assert no_sync_get_connection == []


class InProcessChannel:
    """``airflow dags test``'s in-process supervisor, which runs triggers in-line: ``send`` only."""

    def __init__(self, connections: dict[str, dict[str, Any]]) -> None:
        self.answers = SupervisorChannel()
        self.answers.connections = connections
        self.sent: list[str] = []

    def send(self, msg: Any) -> Any:
        self.sent.append(type(msg).__name__)
        return self.answers.answer(msg)


@pytest.mark.asyncio
async def test_dags_test_in_line_resolves_the_connection_with_the_sync_api(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No ``asend`` (the in-process supervisor of ``dags test``): ``aget_connection`` could not reach
    it, so the synchronous API is used, in a worker thread, as in a task."""
    inline = InProcessChannel(
        {
            "b24": {
                "conn_type": "bitrix24",
                "host": "https://in-line.example",
                "login": "3",
                "password": "code-3",
            }
        }
    )
    monkeypatch.setattr(task_runner, "SUPERVISOR_COMMS", inline, raising=False)
    hook = await open_hook("b24")
    assert hook.get_settings().portal.base_url == "https://in-line.example"
    assert "GetConnection" in inline.sent


# -- OAuth token rotation while a poll runs (emulator, real hook) -----------------------------------


def serve_oauth_connection(channel: SupervisorChannel, emu: Bitrix24Emulator, conn_id: str) -> None:
    conn = emu.oauth_connection()
    conn["extra"] = {**conn["extra"], "max_retries": 0, "operating_max_wait": 0}
    channel.connections[conn_id] = conn


def rotated_pair(channel: SupervisorChannel, conn_id: str) -> dict[str, Any]:
    return dict(json.loads(channel.variables[variable_name(conn_id)]))


@pytest.mark.asyncio
@pytest.mark.usefixtures("_fresh_limiters")
async def test_shared_poll_rotates_oauth_tokens_through_the_loop(
    bitrix24_emulator_factory: Callable[..., Bitrix24Emulator],
    channel: SupervisorChannel,
    no_sync_get_connection: list[int],
) -> None:
    emu = bitrix24_emulator_factory(activities=10, seed=3, rate_limit=None)
    serve_oauth_connection(channel, emu, "b24_oauth")
    seeded = channel.connections["b24_oauth"]["extra"]["refresh_token"]
    for activity_id in (1, 2):
        emu.store.update(activity_id, {"COMPLETED": "N"})
    polled = threading.Event()
    loop = asyncio.get_running_loop()

    async def expire_then_complete() -> None:
        await asyncio.to_thread(polled.wait, 10)  # after a poll: the access token in use expires
        emu.expire_tokens()
        for activity_id in (1, 2):
            emu.store.complete(activity_id)

    triggers = [trigger([i], bitrix24_conn_id="b24_oauth", poll_interval=0.1) for i in (1, 2)]
    tasks = [loop.create_task(events_of(t)) for t in triggers]
    for _ in range(500):
        if emu.stats["requests"] >= 1:
            break
        await asyncio.sleep(0.01)
    polled.set()
    await expire_then_complete()
    results = await asyncio.wait_for(asyncio.gather(*tasks), 20)
    assert [[e.payload["status"] for e in events] for events in results] == [["success"]] * 2
    pair = rotated_pair(channel, "b24_oauth")
    assert pair["refresh_token"] and pair["refresh_token"] != seeded  # rotated, saved to the Variable
    assert channel.sent("PutVariable") == 1 and channel.sent("GetVariable") >= 2
    assert pair["access_token"] in channel.masked  # the new tokens reached the supervisor's masker
    assert channel.threads() == {threading.get_ident()} and channel.sync_sends == []
    assert no_sync_get_connection == []


@pytest.mark.asyncio
@pytest.mark.usefixtures("_fresh_limiters")
async def test_change_feed_rotates_oauth_tokens_through_the_loop(
    bitrix24_emulator_factory: Callable[..., Bitrix24Emulator],
    channel: SupervisorChannel,
    no_sync_get_connection: list[int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(activity_changes, "COMMIT_DELAY_S", 0.05)
    emu = bitrix24_emulator_factory(activities=50, seed=4)
    serve_oauth_connection(channel, emu, "b24_oauth")
    watcher = Bitrix24ActivityChangesTrigger(bitrix24_conn_id="b24_oauth", poll_interval=0.05)
    watcher.cursor_store = store = MemoryCursorStore()
    events: asyncio.Queue[Any] = asyncio.Queue()

    async def consume() -> None:
        async for event in watcher.run():
            await events.put(event)

    task = asyncio.create_task(consume())
    try:
        for _ in range(500):
            if store.saves:
                break
            await asyncio.sleep(0.01)
        emu.expire_tokens()  # the next poll refreshes, in its worker thread
        emu.store.complete(7)
        event = await asyncio.wait_for(events.get(), 15)
        assert event.payload["ids"] == [7]
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert channel.sent("PutVariable") == 1 and rotated_pair(channel, "b24_oauth")["refresh_token"]
    assert channel.threads() == {threading.get_ident()} and channel.sync_sends == []
    assert no_sync_get_connection == []
