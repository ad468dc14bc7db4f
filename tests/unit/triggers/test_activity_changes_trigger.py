"""Bitrix24ActivityChangesTrigger: kwargs and identity, the cursor store, and run() against the emulator.

``run()`` talks HTTPS to an in-process emulator through the real hook (the connection comes from
``AIRFLOW_CONN_BITRIX24_DEFAULT``); the durable store is an in-memory one, or a fake of Airflow
3.3's asset state store accessors. Delays are shrunk (``COMMIT_DELAY_S``, ``poll_interval``), never
slept for seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from typing import Any

import pytest
from airflow.sdk import Asset, AssetWatcher
from airflow.triggers.base import BaseEventTrigger, TriggerEvent

from airflow_provider_b24.exceptions import Bitrix24AuthError, Bitrix24ConfigError
from airflow_provider_b24.testing import Bitrix24Emulator
from airflow_provider_b24.triggers import activity_changes
from airflow_provider_b24.triggers.activity_changes import Bitrix24ActivityChangesTrigger
from airflow_provider_b24.triggers.change_cursor import (
    AssetStateCursorStore,
    MemoryCursorStore,
    VariableCursorStore,
    choose_store,
    variable_name,
)

CLASSPATH = "airflow_provider_b24.triggers.activity_changes.Bitrix24ActivityChangesTrigger"


# ------------------------------------------------------------------------------ kwargs


def test_serialize_is_exact_and_json_plain() -> None:
    trigger = Bitrix24ActivityChangesTrigger(
        bitrix24_conn_id="b24",
        poll_interval=30,
        source="poll",
        filter={"TYPE_ID": 2, "@OWNER_TYPE_ID": [1, 2]},
    )
    classpath, kwargs = trigger.serialize()
    assert classpath == CLASSPATH
    assert kwargs == {
        "bitrix24_conn_id": "b24",
        "poll_interval": 30.0,
        "source": "poll",
        "filter": {"TYPE_ID": 2, "@OWNER_TYPE_ID": [1, 2]},
        "start_from": None,
    }
    assert json.loads(json.dumps(kwargs)) == kwargs
    # rebuilt from its kwargs (as the triggerer does), the watcher hashes the same
    rebuilt = Bitrix24ActivityChangesTrigger(**json.loads(json.dumps(kwargs)))
    assert BaseEventTrigger.hash(*rebuilt.serialize()) == BaseEventTrigger.hash(classpath, kwargs)


def test_the_hash_survives_a_round_trip_through_the_metadata_db() -> None:
    """The DAG processor compares the hash of the kwargs it stored (encrypted) with the parsed ones;
    a mismatch would recreate the watcher on every parse (apache/airflow#64625)."""
    from airflow.models.trigger import Trigger

    trigger = Bitrix24ActivityChangesTrigger(
        filter={"TYPE_ID": 2, "@OWNER_TYPE_ID": [1, 2], "X": {"a": None}}
    )
    classpath, kwargs = trigger.serialize()
    stored = Trigger._decrypt_kwargs(Trigger(classpath=classpath, kwargs=kwargs).encrypted_kwargs)
    assert BaseEventTrigger.hash(classpath, stored) == BaseEventTrigger.hash(classpath, kwargs)


def test_it_is_accepted_by_an_asset_watcher() -> None:
    trigger = Bitrix24ActivityChangesTrigger(bitrix24_conn_id="bitrix24_default", poll_interval=30.0)
    asset = Asset("bitrix24_activities", watchers=[AssetWatcher(name="b24_changes", trigger=trigger)])
    assert asset.watchers[0].trigger is trigger


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"source": "webhook"}, "source must be one of 'poll', 'offline_events', got 'webhook'"),
        ({"filter": {"TYPE_ID": (1, 2)}}, "filter['TYPE_ID'] must hold only JSON values"),
        ({"filter": [("TYPE_ID", 2)]}, "filter must be a dict"),
        ({"filter": {">=LAST_UPDATED": "2026-01-01"}}, "must not constrain LAST_UPDATED"),
        ({"poll_interval": 0}, "poll_interval must be a positive number of seconds, got 0"),
        ({"poll_interval": "30"}, "poll_interval must be a positive number of seconds, got '30'"),
        ({"bitrix24_conn_id": ""}, "bitrix24_conn_id must be a connection ID"),
        ({"start_from": "yesterday"}, "start_from must be an ISO 8601 datetime"),
        (
            {"source": "offline_events", "start_from": "2026-01-01T00:00:00"},
            "start_from applies to source='poll'",
        ),
    ],
)
def test_bad_arguments_fail_when_the_dag_is_parsed(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(
        Bitrix24ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")
    ):
        Bitrix24ActivityChangesTrigger(**kwargs)


def test_identity_ignores_poll_interval_but_not_the_filter() -> None:
    base = Bitrix24ActivityChangesTrigger(poll_interval=30)
    assert Bitrix24ActivityChangesTrigger(poll_interval=5).identity == base.identity
    assert Bitrix24ActivityChangesTrigger(filter={"TYPE_ID": 2}).identity != base.identity
    assert Bitrix24ActivityChangesTrigger(bitrix24_conn_id="other").identity != base.identity
    assert (
        variable_name("bitrix24 default", base.identity)
        == f"bitrix24_changes__bitrix24_default__{base.identity}"
    )


# ------------------------------------------------------------------------------ cursor store


class FakeAccessors:
    """Airflow 3.3's ``AssetStateStoreAccessors`` for one asset (aget/aset), or several (ValueError)."""

    def __init__(self, *, assets: int = 1) -> None:
        self.assets = assets
        self.data: dict[str, Any] = {}

    def _check(self) -> None:
        if self.assets != 1:
            raise ValueError(f"Task has {self.assets} concrete inlets and outlets")

    async def aget(self, key: str, default: Any = None) -> Any:
        self._check()
        return self.data.get(key, default)

    async def aset(self, key: str, value: Any) -> None:
        self._check()
        self.data[key] = value


class NullLog:
    def __init__(self) -> None:
        self.warnings: list[str] = []

    def warning(self, msg: str, *args: Any) -> None:
        self.warnings.append(msg % args)


@pytest.mark.asyncio
async def test_the_asset_state_store_is_used_when_injected() -> None:
    accessors = FakeAccessors()
    store = await choose_store(accessors, conn_id="c", identity="abc", log=NullLog())
    assert isinstance(store, AssetStateCursorStore)
    await store.save({"source": "poll", "last_updated": "2026-01-01T00:00:00+03:00", "ids": [1]})
    assert accessors.data == {
        "bitrix24_changes.abc": {"source": "poll", "last_updated": "2026-01-01T00:00:00+03:00", "ids": [1]}
    }
    assert await store.load() == accessors.data["bitrix24_changes.abc"]


@pytest.mark.asyncio
async def test_airflow_3_1_or_several_assets_fall_back_to_a_variable() -> None:
    assert isinstance(
        await choose_store(None, conn_id="c", identity="abc", log=NullLog()), VariableCursorStore
    )
    log = NullLog()
    store = await choose_store(FakeAccessors(assets=2), conn_id="c", identity="abc", log=log)
    assert isinstance(store, VariableCursorStore) and store.name == "bitrix24_changes__c__abc"
    assert "cannot be used" in log.warnings[0]


# ------------------------------------------------------------------------------ run()


@pytest.fixture(autouse=True)
def fast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(activity_changes, "COMMIT_DELAY_S", 0.2)
    monkeypatch.setattr(activity_changes, "STATS_EVERY_POLLS", 10_000)
    monkeypatch.setattr("airflow_provider_b24.client.errors.OPERATING_RESET_MARGIN_S", 0.0)
    monkeypatch.setattr(Bitrix24ActivityChangesTrigger, "permanent_error_pause", 0.0)


def connect(
    monkeypatch: pytest.MonkeyPatch, emu: Bitrix24Emulator, *, oauth: bool = False, **extra: Any
) -> None:
    conn = emu.oauth_connection() if oauth else emu.connection()
    conn["extra"] = {**conn["extra"], "max_retries": 0, "operating_max_wait": 0, **extra}
    monkeypatch.setenv("AIRFLOW_CONN_BITRIX24_DEFAULT", json.dumps(conn))


def make(
    store: MemoryCursorStore | None = None, **kwargs: Any
) -> tuple[Bitrix24ActivityChangesTrigger, MemoryCursorStore]:
    kwargs.setdefault("poll_interval", 0.05)
    trigger = Bitrix24ActivityChangesTrigger(**kwargs)
    trigger.cursor_store = store if store is not None else MemoryCursorStore()
    assert isinstance(trigger.cursor_store, MemoryCursorStore)
    return trigger, trigger.cursor_store


class Running:
    """``trigger.run()`` consumed in a task, as the triggerer does; events land in a queue."""

    def __init__(self, trigger: Bitrix24ActivityChangesTrigger) -> None:
        self.events: asyncio.Queue[TriggerEvent] = asyncio.Queue()
        self.task = asyncio.ensure_future(self._consume(trigger))

    async def _consume(self, trigger: Bitrix24ActivityChangesTrigger) -> None:
        async for event in trigger.run():
            await self.events.put(event)

    async def next(self, within: float = 15.0) -> TriggerEvent:
        """The next event; the trigger's exception if it raised; AssertionError on timeout."""
        get = asyncio.ensure_future(self.events.get())
        done, _ = await asyncio.wait({get, self.task}, timeout=within, return_when=asyncio.FIRST_COMPLETED)
        if get in done:
            return get.result()
        get.cancel()
        if self.task.done():
            self.task.result()
            raise AssertionError("run() returned (it must poll forever)")
        raise AssertionError(f"no event within {within} s")

    async def stop(self) -> None:
        """Cancel run() (the triggerer stopping) and wait until it has finished."""
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


async def until(predicate: Callable[[], bool], within: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


@pytest.fixture
def emu(bitrix24_emulator_factory: Any) -> Bitrix24Emulator:
    return bitrix24_emulator_factory(activities=300, seed=4)


@pytest.mark.asyncio
async def test_changes_become_events_and_idle_polls_are_one_request_each(
    emu: Bitrix24Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    connect(monkeypatch, emu)
    trigger, store = make()
    run = Running(trigger)
    await until(lambda: len(store.saves) == 1)  # started at the portal's "now", stored at once
    assert store.saves[0]["ids"] == [] and store.saves[0]["source"] == "poll"
    emu.store.complete(12)
    emu.store.update(3, {"SUBJECT": "renamed"})
    event = await run.next()
    assert event.payload == {
        "ids": [3, 12],
        "deleted_ids": [],
        "source": "poll",
        "portal": emu.base_url.split("://")[1],
        "cursor": {"last_updated": event.payload["cursor"]["last_updated"]},
    }
    # idle: one HTTP request per poll
    await until(lambda: len(store.saves) == 2)  # the cursor moved, COMMIT_DELAY_S after the event
    assert store.saves[1]["ids"] == [3, 12]
    emu.stats_reset()
    await asyncio.sleep(0.5)
    stats = emu.stats
    assert stats["requests"] >= 3 and stats["methods"] == {"batch": stats["requests"]}
    assert stats["batch_commands"] == 2 * stats["requests"]
    assert trigger._stats[0] == trigger._stats[1] > 0  # the summary line's counters: 1 request per poll
    await run.stop()


@pytest.mark.asyncio
async def test_a_restart_resumes_from_the_stored_cursor(
    emu: Bitrix24Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    connect(monkeypatch, emu)
    trigger, store = make()
    run = Running(trigger)
    await until(lambda: len(store.saves) == 1)
    emu.store.complete(20)
    assert (await run.next()).payload["ids"] == [20]
    await until(lambda: len(store.saves) == 2)
    await run.stop()  # "the triggerer stops"
    emu.store.complete(21)  # changed while no triggerer runs
    again, _ = make(MemoryCursorStore(store.state))
    run = Running(again)
    assert (await run.next()).payload["ids"] == [21]  # nothing lost, 20 not re-sent
    await run.stop()


@pytest.mark.asyncio
async def test_an_event_whose_cursor_was_not_stored_yet_is_delivered_again(
    emu: Bitrix24Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At least once: a stop within COMMIT_DELAY_S of an event repeats it, it never loses it."""
    monkeypatch.setattr(activity_changes, "COMMIT_DELAY_S", 60.0)
    connect(monkeypatch, emu)
    trigger, store = make()
    run = Running(trigger)
    await until(lambda: len(store.saves) == 1)
    emu.store.complete(30)
    assert (await run.next()).payload["ids"] == [30]
    await run.stop()
    assert len(store.saves) == 1  # the cursor did not move
    again, _ = make(MemoryCursorStore(store.state))
    run = Running(again)
    assert (await run.next()).payload["ids"] == [30]
    await run.stop()


@pytest.mark.asyncio
async def test_transient_errors_and_429_are_waited_out_without_error_events(
    emu: Bitrix24Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    connect(monkeypatch, emu)
    trigger, store = make()
    run = Running(trigger)
    await until(lambda: len(store.saves) == 1)
    emu.faults.add("http_502_html", method="batch", times=2)
    emu.faults.add("query_limit", method="batch", times=1)
    emu.faults.add("operation_time_limit", method="batch", times=1, reset_in=1)
    emu.faults.add("connection_reset", method="batch", times=1)
    emu.store.complete(40)
    event = await run.next()
    assert event.payload["ids"] == [40] and "status" not in event.payload
    assert len(emu.faults.fired) == 5
    await run.stop()


@pytest.mark.asyncio
async def test_permanent_errors_raise_with_a_clear_message_and_no_event(
    emu: Bitrix24Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    connect(monkeypatch, emu)
    conn = json.loads(emu.connection_json())
    conn["password"] = "wrong-code"
    monkeypatch.setenv("AIRFLOW_CONN_BITRIX24_DEFAULT", json.dumps(conn))
    trigger, store = make()
    with pytest.raises(Bitrix24AuthError, match="INVALID_CREDENTIALS"):
        await Running(trigger).next()
    assert store.saves == []


@pytest.mark.asyncio
async def test_an_unknown_connection_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_BITRIX24_NOWHERE", raising=False)
    trigger, _ = make(bitrix24_conn_id="bitrix24_nowhere")
    with pytest.raises(Exception, match="bitrix24_nowhere") as info:
        await Running(trigger).next()
    assert type(info.value).__name__ == "AirflowNotFoundException"


@pytest.mark.asyncio
async def test_offline_events_on_a_webhook_connection_fail_before_any_request(
    emu: Bitrix24Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    connect(monkeypatch, emu)
    trigger, _ = make(source="offline_events")
    emu.stats_reset()
    with pytest.raises(
        Bitrix24ConfigError, match=r"WRONG_AUTH_TYPE \(only applications may read offline events\)"
    ):
        await Running(trigger).next()
    assert emu.stats["requests"] == 0


@pytest.mark.asyncio
async def test_offline_events_report_deletions_and_confirm_after_delivery(
    emu: Bitrix24Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    connect(monkeypatch, emu, oauth=True)
    trigger, store = make(source="offline_events")
    run = Running(trigger)
    await until(lambda: len(store.saves) == 1)
    assert store.saves[0] == {"source": "offline_events", "bound": True, "pending": []}
    emu.store.complete(50)
    emu.store.delete(51)
    event = await run.next()
    assert (event.payload["ids"], event.payload["deleted_ids"], event.payload["source"]) == (
        [50],
        [51],
        "offline_events",
    )
    reserved = store.saves[1]["pending"]
    assert reserved and reserved == event.payload["cursor"]["process_ids"]  # stored before the event
    await until(lambda: emu.events.queue() == [] and store.saves[-1]["pending"] == [])  # confirmed
    await run.stop()


@pytest.mark.asyncio
async def test_a_large_change_is_split_into_events_of_2500(
    bitrix24_emulator_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    emu = bitrix24_emulator_factory(activities=6000, seed=4)
    connect(monkeypatch, emu)
    trigger, store = make()
    run = Running(trigger)
    await until(lambda: len(store.saves) == 1)
    with emu.store.lock:  # one change of 5,500 activities: no poll may fall between the touches
        for activity_id in range(1, 5501):
            emu.store.touch(activity_id)
    sizes = [len((await run.next()).payload["ids"])]
    sizes += [len((await run.next()).payload["ids"]) for _ in range(2)]
    assert sizes == [2500, 2500, 500]
    await run.stop()


def test_the_triggerer_event_loop_imports_nothing_heavy() -> None:
    """The triggerer imports the module and builds the trigger on its event loop: no REST client."""
    import subprocess
    import sys

    code = (
        "import sys, airflow.triggers.base\n"
        "from airflow_provider_b24.triggers.activity_changes import Bitrix24ActivityChangesTrigger\n"
        "Bitrix24ActivityChangesTrigger(filter={'TYPE_ID': 2}).serialize()\n"
        "print(sorted(m for m in ('requests', 'airflow_provider_b24.client', 'airflow_provider_b24.hooks')"
        " if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.strip().splitlines()[-1] == "[]"
