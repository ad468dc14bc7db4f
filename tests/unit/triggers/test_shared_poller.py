"""Triggers of one connection share their polls: join/leave/cancel, unions, per-trigger and connection errors.

Every ``Bitrix24Hook`` is a fake served from one :class:`~tests.unit.triggers.fakes.Portal` (the
``portal`` fixture), so requests, the IDs and fields each asked for, and the hooks built are counted.
The 100-trigger run over HTTP against the emulator is tests/integration/test_shared_poll_emulator.py.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from airflow.triggers.base import TriggerEvent

from airflow_provider_b24.exceptions import Bitrix24AuthError, Bitrix24ServerError
from airflow_provider_b24.triggers.activity import Bitrix24ActivityTrigger
from airflow_provider_b24.triggers.shared_poller import pollers_of
from tests.unit.triggers.fakes import Portal, _row


def trigger(ids: list[int], **kwargs: Any) -> Bitrix24ActivityTrigger:
    kwargs.setdefault("poll_interval", 0.05)
    kwargs.setdefault("first_poll_delay", 0)
    return Bitrix24ActivityTrigger(activity_ids=ids, **kwargs)


async def events_of(t: Bitrix24ActivityTrigger) -> list[TriggerEvent]:
    return [event async for event in t.run()]


async def run_all(*triggers: Bitrix24ActivityTrigger) -> list[list[TriggerEvent]]:
    return await asyncio.wait_for(asyncio.gather(*(events_of(t) for t in triggers)), 10)


async def wait_until(predicate: Callable[[], bool]) -> None:
    """Let the loop run until ``predicate()`` holds (10 s at most)."""
    for _ in range(1000):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("timed out")


def complete_on_request(portal: Portal, n: int, ids: list[int]) -> None:
    """From the n-th request on, ``ids`` are completed."""

    def hook(p: Portal) -> None:
        if p.requests == n:
            for i in ids:
                p.rows[i] = _row(i, True)

    portal.on_request = hook


@pytest.mark.asyncio
async def test_triggers_share_one_hook_and_one_request_per_poll(portal: Portal) -> None:
    portal.rows = {i: _row(i) for i in range(1, 61)}
    complete_on_request(portal, 3, list(range(1, 61)))
    # first_poll_delay: all 20 have joined before the first is due (a triggerer starts them together).
    triggers = [trigger([3 * k + 1, 3 * k + 2, 3 * k + 3], first_poll_delay=0.1) for k in range(20)]
    results = await run_all(*triggers)
    assert [len(events) for events in results] == [1] * 20  # exactly one event each
    for k, (event,) in enumerate(results):
        assert event.payload["status"] == "success"
        assert [row["ID"] for row in event.payload["activities"]] == [str(3 * k + i) for i in (1, 2, 3)]
    assert portal.requests == 3  # three shared polls, not 60 requests
    assert all(sorted(asked) == list(range(1, 61)) for _t, asked, _s in portal.log)
    assert len(portal.hooks) == 1 and portal.hooks[0].closed  # one hook per connection, closed at the end
    assert pollers_of(asyncio.get_running_loop()) == {}  # the last trigger out stopped the poller


@pytest.mark.asyncio
async def test_the_union_of_selects_is_fetched_and_each_trigger_gets_its_own_fields(portal: Portal) -> None:
    portal.rows = {
        i: {**_row(i, True), "COMMUNICATIONS": [{"VALUE": "+1"}], "START_TIME": "2030-01-01T00:00:00+03:00"}
        for i in (1, 2, 3)
    }
    everything, subject, comms = await run_all(
        trigger([1, 2]), trigger([2], select=["SUBJECT"]), trigger([3, 1], select=["COMMUNICATIONS"])
    )
    assert portal.requests == 1
    (_t, asked, select) = portal.log[0]
    assert sorted(asked) == [1, 2, 3]
    assert select == ["*", "ID", "SUBJECT", "COMPLETED", "COMMUNICATIONS"]
    rows = everything[0].payload["activities"]
    assert rows == [{k: v for k, v in portal.rows[i].items() if k != "COMMUNICATIONS"} for i in (1, 2)]
    assert subject[0].payload["activities"] == [{"ID": "2", "SUBJECT": "Call 2", "COMPLETED": "Y"}]
    assert comms[0].payload["activities"] == [portal.rows[3], portal.rows[1]]


@pytest.mark.asyncio
async def test_a_trigger_joining_later_shares_the_running_poll(portal: Portal) -> None:
    portal.rows = {1: _row(1), 2: _row(2)}
    first = asyncio.create_task(events_of(trigger([1], poll_interval=0.1)))
    await wait_until(lambda: portal.requests >= 2)
    second = asyncio.create_task(events_of(trigger([2], poll_interval=0.1)))
    await wait_until(lambda: any(2 in asked for _t, asked, _s in portal.log))
    portal.rows = {1: _row(1, True), 2: _row(2, True)}
    (a,), (b,) = await asyncio.wait_for(asyncio.gather(first, second), 10)
    assert a.payload["status"] == b.payload["status"] == "success"
    assert len(portal.hooks) == 1
    assert all(len(asked) == 2 for _t, asked, _s in portal.log if 2 in asked)  # one request for both


@pytest.mark.asyncio
async def test_a_cancelled_trigger_leaves_and_the_others_keep_polling(portal: Portal) -> None:
    portal.rows = {1: _row(1), 2: _row(2)}
    leaving = asyncio.create_task(events_of(trigger([1])))
    staying = asyncio.create_task(events_of(trigger([2])))
    await wait_until(lambda: portal.requests >= 2)
    leaving.cancel()  # the task was cleared, or the triggerer is shutting down
    with pytest.raises(asyncio.CancelledError):
        await leaving
    (poller,) = pollers_of(asyncio.get_running_loop()).values()
    assert len(poller.members) == 1
    asked_before = len(portal.log)
    await wait_until(lambda: len(portal.log) >= asked_before + 2)
    assert all(asked == [2] for _t, asked, _s in portal.log[asked_before:])  # 1 is no longer asked for
    portal.rows[2] = _row(2, True)
    (event,) = await asyncio.wait_for(staying, 10)
    assert event.payload["status"] == "success"
    assert portal.hooks[0].closed


@pytest.mark.asyncio
async def test_cancelling_every_trigger_stops_the_poller_and_closes_the_hook(portal: Portal) -> None:
    portal.rows = {1: _row(1)}
    tasks = [asyncio.create_task(events_of(trigger([1]))) for _ in range(5)]
    await wait_until(lambda: portal.requests >= 2)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert pollers_of(asyncio.get_running_loop()) == {}
    assert portal.hooks[0].closed
    requests = portal.requests
    await asyncio.sleep(0.2)
    assert portal.requests == requests  # nobody polls any more


@pytest.mark.asyncio
async def test_a_trigger_is_never_answered_before_its_first_poll_delay(portal: Portal) -> None:
    portal.rows = {1: _row(1), 2: _row(2, True)}
    started = time.monotonic()
    fast = asyncio.create_task(events_of(trigger([1], poll_interval=0.02)))
    (event,) = await asyncio.wait_for(events_of(trigger([2], poll_interval=0.02, first_poll_delay=0.4)), 10)
    answered = time.monotonic()
    assert event.payload["status"] == "success"
    assert answered - started >= 0.4
    first_ask = min(t for t, asked, _s in portal.log if 2 in asked)
    assert first_ask - started >= 0.4  # the running poll did not include it early
    assert sum(1 for _t, asked, _s in portal.log if asked == [1]) >= 5  # the other kept polling alone
    fast.cancel()
    await asyncio.gather(fast, return_exceptions=True)


@pytest.mark.asyncio
async def test_the_shared_poll_runs_at_the_smallest_interval(portal: Portal) -> None:
    portal.rows = {1: _row(1), 2: _row(2)}
    tasks = [
        asyncio.create_task(events_of(trigger([1], poll_interval=0.1))),
        asyncio.create_task(events_of(trigger([2], poll_interval=5))),
    ]
    await asyncio.sleep(0.75)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    starts = [t for t, _a, _s in portal.log]
    assert 5 <= len(starts) <= 9  # every 0.1 s, not 0.05 and not 5
    assert (starts[-1] - starts[0]) / (len(starts) - 1) >= 0.09  # on average (thread start-up jitters)
    assert sum(1 for _t, asked, _s in portal.log if 2 in asked) == 1  # 2 may be 5 s stale: asked once


@pytest.mark.asyncio
async def test_a_bad_select_fails_only_its_trigger(portal: Portal) -> None:
    portal.rows = {i: _row(i, True) for i in (1, 2, 3)}
    portal.refused_fields = {"BOGUS"}  # the portal refuses requests naming it
    ok1, bad, ok2, invalid = await run_all(
        trigger([1]), trigger([2], select=["BOGUS"]), trigger([3]), trigger([1], select=[""])
    )
    assert ok1[0].payload["status"] == ok2[0].payload["status"] == "success"
    assert [e.payload for e in bad] == [
        {"status": "error", "message": "Bitrix24BadRequest: HTTP 400: unknown field BOGUS", "outcome": "fail"}
    ]
    assert invalid[0].payload["status"] == "error" and "InvalidSelect" in invalid[0].payload["message"]
    assert len(portal.hooks) == 1


@pytest.mark.asyncio
async def test_a_connection_error_ends_every_trigger_with_an_error_event(portal: Portal) -> None:
    portal.rows = {1: _row(1)}
    portal.raise_next = [Bitrix24AuthError("Invalid token", code="INVALID_CREDENTIALS", http_status=401)]
    results = await run_all(*(trigger([i]) for i in range(1, 11)))
    assert [[e.payload["status"] for e in events] for events in results] == [["error"]] * 10
    assert all("Bitrix24AuthError" in events[0].payload["message"] for events in results)
    assert portal.requests == 1
    assert portal.hooks[0].closed


@pytest.mark.asyncio
async def test_an_unknown_connection_ends_every_trigger(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_NOPE", raising=False)
    results = await run_all(*(trigger([i], bitrix24_conn_id="nope") for i in (1, 2, 3)))
    assert [[e.payload["status"] for e in events] for events in results] == [["error"]] * 3
    assert all("nope" in events[0].payload["message"] for events in results)


@pytest.mark.asyncio
async def test_transient_errors_keep_every_trigger_polling(portal: Portal) -> None:
    portal.rows = {1: _row(1, True), 2: _row(2, True)}
    portal.raise_next = [Bitrix24ServerError("boom", http_status=500)] * 2
    results = await run_all(trigger([1]), trigger([2]))
    assert [[e.payload["status"] for e in events] for events in results] == [["success"], ["success"]]
    assert portal.requests == 3


@pytest.mark.asyncio
async def test_connections_do_not_share(portal: Portal) -> None:
    portal.rows = {1: _row(1, True)}
    await run_all(trigger([1], bitrix24_conn_id="a"), trigger([1], bitrix24_conn_id="b"))
    assert sorted(h.conn_id for h in portal.hooks) == ["a", "b"]
    assert portal.requests == 2


def test_event_loops_do_not_share(portal: Portal) -> None:
    """The registry is per event loop: triggers in two loops (threads) each get their own poller."""
    portal.rows = {1: _row(1), 2: _row(2)}
    seen: list[int] = []
    barrier = threading.Barrier(2)

    def in_a_loop(ids: list[int]) -> None:
        async def main() -> None:
            task = asyncio.create_task(events_of(trigger(ids)))
            await wait_until(lambda: bool(pollers_of(asyncio.get_running_loop())))
            seen.append(id(next(iter(pollers_of(asyncio.get_running_loop()).values()))))
            await asyncio.to_thread(barrier.wait, 10)
            portal.rows[ids[0]] = _row(ids[0], True)
            await asyncio.wait_for(task, 10)

        asyncio.run(main())

    threads = [threading.Thread(target=in_a_loop, args=([i],)) for i in (1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert len(set(seen)) == 2
    assert len(portal.hooks) == 2 and all(h.closed for h in portal.hooks)
