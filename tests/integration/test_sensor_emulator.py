"""Bitrix24ActivitySensor and Bitrix24ActivityTrigger over real HTTPS against the bundled emulator.

Counts are what the emulator served (``emu.stats["requests"]``), not what the client believes it sent.
The connection comes from ``AIRFLOW_CONN_BITRIX24_DEFAULT`` (the sensor builds its own hook).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from airflow_provider_b24._compat import AirflowFailException, TaskDeferred
from airflow_provider_b24.sensors.activity import Bitrix24ActivitySensor
from airflow_provider_b24.testing import Bitrix24Emulator
from airflow_provider_b24.triggers.activity import Bitrix24ActivityTrigger

try:
    from airflow.sdk.exceptions import AirflowRescheduleException
except ImportError:  # Airflow 3.1
    from airflow.exceptions import AirflowRescheduleException  # type: ignore[no-redef]

#: Surface errors at the sensor at once: no client retries and no waiting for a 429 reset.
FAST_EXTRA = {"max_retries": 0, "operating_max_wait": 0, "rate_limit": 0}


def use(emu: Bitrix24Emulator, monkeypatch: pytest.MonkeyPatch, **extra: Any) -> None:
    conn = emu.connection()
    conn["extra"] = {**conn["extra"], **FAST_EXTRA, **extra}
    monkeypatch.setenv("AIRFLOW_CONN_BITRIX24_DEFAULT", json.dumps(conn))


@pytest.fixture
def emu(bitrix24_emulator_factory: Callable[..., Bitrix24Emulator], monkeypatch: pytest.MonkeyPatch) -> Any:
    emulator = bitrix24_emulator_factory(activities=30, seed=7, rate_limit=None)
    for activity_id in emulator.store.ids():
        emulator.store.update(activity_id, {"COMPLETED": "N"})
    use(emulator, monkeypatch)
    return emulator


def served(emu: Bitrix24Emulator) -> int:
    return int(emu.stats["requests"])


def sensor(**kwargs: Any) -> Bitrix24ActivitySensor:
    kwargs.setdefault("task_id", "wait")
    kwargs.setdefault("poke_interval", 0)
    return Bitrix24ActivitySensor(**kwargs)


def test_poke_states_with_one_request_each(emu: Bitrix24Emulator) -> None:
    s = sensor(activity_ids=[5, 3, 9])
    before = served(emu)
    assert s.poke({}).is_done is False
    emu.store.complete(3)
    assert s.poke({}).is_done is False
    emu.store.complete(5)
    emu.store.complete(9)
    result = s.poke({})
    assert result.is_done is True
    assert served(emu) - before == 3  # one HTTP request per poke
    assert [a["ID"] for a in result.xcom_value] == [5, 3, 9]
    assert all(a["COMPLETED"] is True for a in result.xcom_value)


def test_missing_ids_wait_until_created(emu: Bitrix24Emulator) -> None:
    s = sensor(activity_ids=[2, 5000], until="exists")
    assert s.poke({}).is_done is False
    emu.store.add({"SUBJECT": "late call", "TYPE_ID": 2, "OWNER_TYPE_ID": 3, "OWNER_ID": 1}, activity_id=5000)
    result = s.poke({})
    assert result.is_done is True
    assert [a["ID"] for a in result.xcom_value] == [2, 5000]
    assert result.xcom_value[1]["SUBJECT"] == "late call"
    assert result.xcom_value[1]["COMPLETED"] is False


def test_request_count_is_ceil_n_over_2500(
    bitrix24_emulator_factory: Callable[..., Bitrix24Emulator], monkeypatch: pytest.MonkeyPatch
) -> None:
    big = bitrix24_emulator_factory(activities=2501, seed=3, rate_limit=None)
    use(big, monkeypatch)
    for n, expected in ((2500, 1), (2501, 2)):
        before = served(big)
        sensor(activity_ids=list(range(1, n + 1)), until="exists").poke({})
        assert served(big) - before == expected


def test_auth_error_fails_at_once_without_retries(
    emu: Bitrix24Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    conn = emu.connection()
    conn["password"] = "wrongcode0000000"
    conn["extra"] = {**conn["extra"], "max_retries": 3}
    monkeypatch.setenv("AIRFLOW_CONN_BITRIX24_DEFAULT", json.dumps(conn))
    before = served(emu)
    with pytest.raises(AirflowFailException, match="Bitrix24AuthError"):
        sensor(activity_ids=[1], retries=3).execute({})
    assert served(emu) - before == 1


def test_operation_time_limit_waits_for_reset(emu: Bitrix24Emulator) -> None:
    emu.store.complete(1)
    emu.faults.add("operation_time_limit", method="batch", reset_in=30)
    s = sensor(activity_ids=[1])
    before = served(emu)
    assert s.poke({}).is_done is False  # 429: not a failure
    assert s.poke({}).is_done is False  # before the reset: no request at all
    assert served(emu) - before == 1
    assert s._not_before is not None and s._not_before > time.time() + 20


def test_operation_time_limit_in_reschedule_mode(emu: Bitrix24Emulator) -> None:
    emu.faults.add("operation_time_limit", method="batch", reset_in=300)

    class TI:
        def get_first_reschedule_date(self, context: Any) -> None:
            return None

    with pytest.raises(AirflowRescheduleException) as info:
        sensor(activity_ids=[1], mode="reschedule", poke_interval=60).execute({"ti": TI()})
    assert info.value.reschedule_date.timestamp() > time.time() + 200


def test_transient_error_keeps_waiting(emu: Bitrix24Emulator) -> None:
    emu.store.complete(1)
    emu.faults.add("http_500_json", method="batch")
    s = sensor(activity_ids=[1])
    assert s.poke({}).is_done is False
    assert s.poke({}).is_done is True


# -- deferrable: sensor -> trigger -> execute_complete --------------------------------------------


def complete_later(emu: Bitrix24Emulator, ids: list[int], delay: float) -> threading.Timer:
    timer = threading.Timer(delay, lambda: [emu.store.complete(i) for i in ids])
    timer.start()
    return timer


@pytest.mark.asyncio
async def test_trigger_run_fires_once_the_activity_is_completed(emu: Bitrix24Emulator) -> None:
    trigger = Bitrix24ActivityTrigger(activity_ids=[4, 2], poll_interval=0.1, first_poll_delay=0)
    before = served(emu)
    timer = complete_later(emu, [2, 4], 0.3)
    started = time.monotonic()
    events = await asyncio.wait_for(_collect(trigger), timeout=20)
    timer.join()
    assert time.monotonic() - started >= 0.3
    assert len(events) == 1
    payload = events[0].payload
    assert payload["status"] == "success"
    assert [row["ID"] for row in payload["activities"]] == ["4", "2"]  # raw rows, input order
    assert all(row["COMPLETED"] == "Y" for row in payload["activities"])
    assert json.loads(json.dumps(payload)) == payload
    assert served(emu) - before >= 2  # it polled while waiting


@pytest.mark.asyncio
async def test_trigger_keeps_polling_through_faults(emu: Bitrix24Emulator) -> None:
    emu.store.complete(1)
    emu.faults.add("http_500_json", method="batch")
    emu.faults.add("query_limit", method="batch")
    emu.faults.add("operation_time_limit", method="batch", reset_in=0.2)
    events = await asyncio.wait_for(
        _collect(Bitrix24ActivityTrigger(activity_ids=[1], poll_interval=0.05, first_poll_delay=0)),
        timeout=20,
    )
    assert [e.payload["status"] for e in events] == ["success"]


@pytest.mark.asyncio
async def test_trigger_error_event_on_bad_credentials(
    emu: Bitrix24Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    conn = emu.connection()
    conn["password"] = "wrongcode0000000"
    monkeypatch.setenv("AIRFLOW_CONN_BITRIX24_DEFAULT", json.dumps(conn))
    events = await asyncio.wait_for(
        _collect(Bitrix24ActivityTrigger(activity_ids=[1], poll_interval=0.05, first_poll_delay=0)),
        timeout=20,
    )
    assert len(events) == 1
    assert events[0].payload["status"] == "error"
    assert "Bitrix24AuthError" in events[0].payload["message"]
    assert "wrongcode" not in events[0].payload["message"]


def test_deferrable_round_trip_matches_poke_output(emu: Bitrix24Emulator) -> None:
    s = sensor(activity_ids="[7, 6]", deferrable=True, poke_interval=0.1, timeout=60, first_poll_delay=0.2)
    with pytest.raises(TaskDeferred) as info:
        s.execute({})
    trigger = info.value.trigger
    _classpath, kwargs = trigger.serialize()
    rebuilt = Bitrix24ActivityTrigger(**json.loads(json.dumps(kwargs)))  # as the triggerer would
    timer = complete_later(emu, [6, 7], 0.3)
    events = asyncio.run(asyncio.wait_for(_collect(rebuilt), timeout=20))
    timer.join()
    value = s.execute_complete({}, events[0].payload)
    assert [a["ID"] for a in value] == [7, 6]
    assert value == sensor(activity_ids=[7, 6]).poke({}).xcom_value


async def _collect(trigger: Bitrix24ActivityTrigger) -> list[Any]:
    return [event async for event in trigger.run()]
