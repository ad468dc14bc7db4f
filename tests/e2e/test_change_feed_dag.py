"""``dags_examples/b24_on_activity_change.py`` for real: trigger events → asset events → a DAG run.

1. The trigger (``Bitrix24ActivityChangesTrigger``) runs in this process against the emulator over
   HTTPS (as the triggerer would run it) while the test completes calls and renames activities;
   the events it yields are collected.
2. Those payloads become asset events of ``bitrix24_activities``, registered as the triggerer does
   (``AssetManager.register_asset_change``), and the example DAG runs with them as its triggering
   asset events (``scripts/run_on_asset_events.py``: ``DAG.test()`` on a SQLite metadata DB).
3. The run's XComs are checked against numbers computed here from the emulator's wire rows.

The full topology (scheduler, DAG processor, triggerer restarts, PostgreSQL) is the deployment
test's job; ``airflow dags test`` cannot run a watcher.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pendulum
import pytest

from airflow_provider_b24.testing import Bitrix24Emulator
from airflow_provider_b24.triggers import activity_changes
from airflow_provider_b24.triggers.activity_changes import Bitrix24ActivityChangesTrigger
from airflow_provider_b24.triggers.change_cursor import MemoryCursorStore
from tests.e2e.harness import AirflowRunner, DagRunResult

pytestmark = pytest.mark.e2e

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = REPO_ROOT / "scripts" / "run_on_asset_events.py"
DAG_ID = "b24_on_activity_change"


@pytest.fixture
def dags_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "dags"
    folder.mkdir()
    shutil.copy(REPO_ROOT / "dags_examples" / f"{DAG_ID}.py", folder)
    return folder


@pytest.fixture
def emu(bitrix24_emulator_factory: Any) -> Bitrix24Emulator:
    return bitrix24_emulator_factory(activities=400, seed=8)


def run_with_events(
    runner: AirflowRunner, dags_folder: Path, emu: Bitrix24Emulator, payloads: list[dict[str, Any]]
) -> DagRunResult:
    env = runner.env(
        {
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
            "AIRFLOW_CONN_BITRIX24_DEFAULT": emu.connection_json(),
            "B24_EXAMPLE_CHANGE_POLL_INTERVAL": "1",
        }
    )
    proc = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            str(dags_folder),
            DAG_ID,
            "bitrix24_activities",
            "--payloads",
            json.dumps(payloads),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    result = runner.last_run(DAG_ID, returncode=proc.returncode, output=proc.stdout + proc.stderr)
    assert result.run_id is not None, result.output[-3000:]
    return result


def consumed_payloads(runner: AirflowRunner, run_id: str | None) -> list[dict[str, Any]]:
    """The payloads of the asset events a run consumed (``dagrun_asset_event``)."""
    rows = runner.rows(
        "SELECT e.extra FROM asset_event e JOIN dagrun_asset_event d ON d.event_id = e.id "
        "JOIN dag_run r ON r.id = d.dag_run_id WHERE r.run_id = ? ORDER BY e.id",
        run_id,
    )
    return [json.loads(extra)["payload"] for (extra,) in rows]


async def collect_events(
    trigger: Bitrix24ActivityChangesTrigger, change: Any, count: int
) -> list[dict[str, Any]]:
    """Run the trigger until ``count`` events came, calling ``change()`` once it has started."""
    store = MemoryCursorStore()
    trigger.cursor_store = store
    events: list[dict[str, Any]] = []

    async def consume() -> None:
        async for event in trigger.run():
            events.append(event.payload)
            if len(events) == count:
                return

    task = asyncio.ensure_future(consume())
    try:
        for _ in range(500):
            if store.saves:
                break
            await asyncio.sleep(0.02)
        assert store.saves, "the trigger did not start"
        await asyncio.to_thread(change)
        await asyncio.wait_for(asyncio.shield(task), 30)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    return events


def wire_seconds(row: dict[str, Any]) -> int:
    start, end = pendulum.parse(row["START_TIME"]), pendulum.parse(row["END_TIME"])
    return max(0, int((end - start).total_seconds()))  # type: ignore[operator]


@pytest.fixture
def fast_commit(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(activity_changes, "COMMIT_DELAY_S", 0.2)
    yield


def test_changed_activities_reach_a_run_of_the_example_dag(
    airflow_runner: AirflowRunner,
    dags_folder: Path,
    emu: Bitrix24Emulator,
    monkeypatch: pytest.MonkeyPatch,
    fast_commit: None,
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_BITRIX24_DEFAULT", emu.connection_json())
    rows = emu.store.dump()["activities"]
    open_calls = [int(r["ID"]) for r in rows if r["TYPE_ID"] == "2" and r["COMPLETED"] == "N"][:3]
    others = [int(r["ID"]) for r in rows if r["TYPE_ID"] != "2"][:2]
    emu.store.complete(others[0])  # before the watcher starts: history, must not show up

    def change() -> None:
        for call in open_calls:
            emu.store.complete(call)  # "a call was completed"
        emu.store.update(others[1], {"SUBJECT": "renamed by a user"})

    trigger = Bitrix24ActivityChangesTrigger(bitrix24_conn_id="bitrix24_default", poll_interval=0.1)
    payloads = asyncio.run(collect_events(trigger, change, 1))
    changed = sorted([*open_calls, others[1]])
    assert [p["ids"] for p in payloads] == [changed]
    assert payloads[0]["source"] == "poll" and payloads[0]["deleted_ids"] == []

    result = run_with_events(airflow_runner, dags_folder, emu, payloads)
    assert result.state == "success", result.output[-4000:]
    assert result.task_states == {
        ("changed_ids", -1): "success",
        ("fetch_activities", -1): "success",
        ("completed_calls", -1): "success",
    }
    assert consumed_payloads(airflow_runner, result.run_id) == payloads
    assert result.xcom("changed_ids") == changed
    fetched = result.xcom("fetch_activities")
    assert [a["ID"] for a in fetched] == changed
    by_id = {int(r["ID"]): r for r in emu.store.dump()["activities"]}
    expected_seconds: dict[str, int] = {}
    for call in open_calls:
        user = str(int(by_id[call]["RESPONSIBLE_ID"]))
        expected_seconds[user] = expected_seconds.get(user, 0) + wire_seconds(by_id[call])
    assert result.xcom("completed_calls") == {
        "changed": 4,
        "completed_calls": sorted(open_calls),
        "call_seconds_by_user": dict(sorted(expected_seconds.items())),
    }


def test_several_events_in_one_run_and_deletions(
    airflow_runner: AirflowRunner, dags_folder: Path, emu: Bitrix24Emulator
) -> None:
    """Events folded into one run are merged; IDs reported deleted are not fetched."""
    payloads = [
        {"ids": [5, 7], "deleted_ids": [], "source": "offline_events", "portal": "p", "cursor": {}},
        {"ids": [7, 9], "deleted_ids": [5], "source": "offline_events", "portal": "p", "cursor": {}},
    ]
    emu.store.delete(5)
    result = run_with_events(airflow_runner, dags_folder, emu, payloads)
    assert result.state == "success", result.output[-4000:]
    assert result.xcom("changed_ids") == [7, 9]
    assert [a["ID"] for a in result.xcom("fetch_activities")] == [7, 9]
