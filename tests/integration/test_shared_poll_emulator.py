"""100 deferred triggers in one event loop share their polls, over real HTTPS against the emulator.

Counts are what the emulator served (``emu.stats["requests"]``). The connection comes from
``AIRFLOW_CONN_BITRIX24_DEFAULT``; each trigger's rows are checked against its own fetch.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import threading
from collections.abc import Callable
from typing import Any

import pytest

from airflow_provider_b24.activities import fetch_activities
from airflow_provider_b24.activities.waiting import select_for
from airflow_provider_b24.hooks.bitrix24 import Bitrix24Hook
from airflow_provider_b24.testing import Bitrix24Emulator
from airflow_provider_b24.triggers.activity import Bitrix24ActivityTrigger
from airflow_provider_b24.triggers.shared_poller import SharedActivityPoller, pollers_of

SELECTS: list[Any] = [None, ["SUBJECT"], ["COMMUNICATIONS"], ["SUBJECT", "START_TIME"]]


def use(emu: Bitrix24Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    conn = emu.connection()
    conn["extra"] = {**conn["extra"], "max_retries": 0, "operating_max_wait": 0}
    monkeypatch.setenv("AIRFLOW_CONN_BITRIX24_DEFAULT", json.dumps(conn))


def served(emu: Bitrix24Emulator) -> int:
    return int(emu.stats["requests"])


def visible_ids(emu: Bitrix24Emulator) -> list[int]:
    hidden = emu.store.hidden_ids()
    return [i for i in emu.store.ids() if i not in hidden]


async def run_fleet(triggers: list[Bitrix24ActivityTrigger]) -> tuple[list[list[Any]], SharedActivityPoller]:
    """Run every trigger as the triggerer would; also return their shared poller."""

    async def events(t: Bitrix24ActivityTrigger) -> list[Any]:
        return [e.payload async for e in t.run()]

    tasks = [asyncio.create_task(events(t)) for t in triggers]
    loop = asyncio.get_running_loop()
    for _ in range(1000):
        if pollers_of(loop):
            break
        await asyncio.sleep(0.01)
    (poller,) = pollers_of(loop).values()
    results = await asyncio.wait_for(asyncio.gather(*tasks), 60)
    return results, poller


@pytest.mark.asyncio
async def test_100_triggers_share_one_request_per_poll(
    bitrix24_emulator_factory: Callable[..., Bitrix24Emulator], monkeypatch: pytest.MonkeyPatch
) -> None:
    emu = bitrix24_emulator_factory(activities=700, seed=11, rate_limit=None)
    use(emu, monkeypatch)
    pool = visible_ids(emu)
    for activity_id in pool:
        emu.store.update(activity_id, {"COMPLETED": "N"})
    rng = random.Random(5)
    rng.shuffle(pool)
    wanted: list[list[int]] = []
    at = 0
    for k in range(100):
        n = rng.randint(1, 5)
        ids = pool[at : at + n]
        at += n
        if k % 10 == 0 and wanted:  # some triggers wait for an activity another one waits for too
            ids = [*ids, wanted[-1][0]]
        wanted.append(ids)
    unique = {i for ids in wanted for i in ids}
    triggers = [
        Bitrix24ActivityTrigger(
            activity_ids=ids, poll_interval=0.3, first_poll_delay=0.2, select=SELECTS[k % len(SELECTS)]
        )
        for k, ids in enumerate(wanted)
    ]
    # The activities are completed at random times while the triggers wait.
    timers = [threading.Timer(rng.uniform(0.3, 1.5), emu.store.complete, (i,)) for i in sorted(unique)]
    before = served(emu)
    for timer in timers:
        timer.start()
    results, poller = await run_fleet(triggers)
    for timer in timers:
        timer.join()
    requests = served(emu) - before

    assert [len(events) for events in results] == [1] * 100  # exactly one event per trigger
    assert all(events[0]["status"] == "success" for events in results)
    # Requests per poll interval: one poll per interval for all 100, ceil(unique IDs / 2500) each.
    per_poll = math.ceil(len(unique) / 2500)
    assert per_poll == 1
    assert requests == poller.polls * per_poll
    assert 3 <= poller.polls <= 12  # ~1.5 s of completions / 0.3 s, not 100 triggers x that
    # Each trigger got exactly what its own fetch returns, in its input order, with its own fields.
    hook = Bitrix24Hook()
    try:
        for k, (ids, events) in enumerate(zip(wanted, results, strict=True)):
            select = select_for(SELECTS[k % len(SELECTS)], "completed")
            own = fetch_activities(hook, ids, select=select)
            assert events[0]["activities"] == own.activities, k
    finally:
        hook.close()
    assert pollers_of(asyncio.get_running_loop()) == {}  # the poller stopped with its last trigger


@pytest.mark.asyncio
async def test_5000_ids_take_ceil_n_over_2500_requests_per_poll(
    bitrix24_emulator_factory: Callable[..., Bitrix24Emulator], monkeypatch: pytest.MonkeyPatch
) -> None:
    emu = bitrix24_emulator_factory(activities=5600, seed=12, rate_limit=None)
    use(emu, monkeypatch)
    pool = visible_ids(emu)[:5200]
    # three triggers, 2,000 IDs each, overlapping: 5,200 unique IDs -> 3 requests per poll
    triggers = [
        Bitrix24ActivityTrigger(activity_ids=pool[start : start + 2000], until="exists", first_poll_delay=0)
        for start in (0, 1600, 3200)
    ]
    before = served(emu)
    results, poller = await run_fleet(triggers)
    assert [events[0]["status"] for events in results] == ["success"] * 3
    assert [len(events[0]["activities"]) for events in results] == [2000] * 3
    assert poller.polls == 1
    assert served(emu) - before == math.ceil(5200 / 2500) == 3


@pytest.mark.asyncio
async def test_bad_credentials_end_every_trigger(
    bitrix24_emulator_factory: Callable[..., Bitrix24Emulator], monkeypatch: pytest.MonkeyPatch
) -> None:
    emu = bitrix24_emulator_factory(activities=30, seed=7, rate_limit=None)
    conn = emu.connection()
    conn["password"] = "wrongcode0000000"
    monkeypatch.setenv("AIRFLOW_CONN_BITRIX24_DEFAULT", json.dumps(conn))
    triggers = [Bitrix24ActivityTrigger(activity_ids=[i], first_poll_delay=0.1) for i in range(1, 21)]
    before = served(emu)
    results, _poller = await run_fleet(triggers)
    assert [len(events) for events in results] == [1] * 20
    assert all(events[0]["status"] == "error" and events[0]["outcome"] == "fail" for events in results)
    assert all("Bitrix24AuthError" in events[0]["message"] for events in results)
    assert not any("wrongcode" in events[0]["message"] for events in results)
    assert served(emu) - before == 1  # one shared request, not 20
