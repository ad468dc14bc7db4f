"""Bitrix24ActivitySensor in real ``airflow dags test`` runs against the emulator in this process.

* ``sensor_reschedule``: the sensor is rescheduled (task_reschedule rows) until a thread of this test
  completes the activities; a second sensor on an ID that never appears times out and, with
  ``soft_fail``, is skipped.
* ``sensor_deferrable``: the sensor defers; ``airflow dags test`` runs the trigger in-process
  ("[DAG TEST] running trigger in line", Airflow 3.1 and 3.3 alike), the trigger polls until this
  test completes the activities, and ``execute_complete`` pushes the parsed activities.
* ``sensor_fleet``: four mapped deferrable sensors under ``dags test --use-executor`` while a real
  ``airflow triggerer`` and ``api-server`` run, the connection stored in the metadata DB (the
  production path: the triggers resolve it through the triggerer's supervisor, the path of
  apache/airflow#64620 on 3.1); their triggers share their polls, and the trigger runner survives.
* opt-in (``B24_E2E_TRIGGERER=1``): ``sensor_deferrable`` the same way (~45 s more; the fleet test
  covers the same path, and the in-line test above the same DAG).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import sqlite3
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_b24.testing import Bitrix24Emulator
from airflow_provider_b24.testing.airflow_home import stop_process_group

pytestmark = pytest.mark.e2e

DAGS = Path(__file__).parent / "dags"
IDS = [12, 4]


@pytest.fixture
def dags_folder(tmp_path: Path) -> Path:
    """Only this test's DAG files (others in tests/e2e/dags are not parsed)."""
    folder = tmp_path / "dags"
    folder.mkdir()
    for path in DAGS.glob("sensor_*.py"):
        shutil.copy(path, folder / path.name)
    return folder


@pytest.fixture
def emu(bitrix24_emulator_factory: Callable[..., Bitrix24Emulator]) -> Bitrix24Emulator:
    emulator = bitrix24_emulator_factory(activities=20, seed=5, rate_limit=None)
    for activity_id in IDS:
        emulator.store.update(activity_id, {"COMPLETED": "N"})
    return emulator


class Completer:
    """Completes IDS from a thread once ``ready()`` holds (the sensor is waiting), 1 s later."""

    def __init__(self, emu: Bitrix24Emulator) -> None:
        self.emu = emu
        self.done = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, ready: Callable[[], bool]) -> None:
        def run() -> None:
            while not self._stop.is_set():
                try:
                    if ready():
                        break
                except sqlite3.Error:  # the DB is busy or not written yet
                    pass
                time.sleep(0.1)
            if self._stop.wait(1.0):
                return
            for activity_id in IDS:
                self.emu.store.complete(activity_id)
            self.done.set()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)


@pytest.fixture
def completer(emu: Bitrix24Emulator) -> Iterator[Completer]:
    c = Completer(emu)
    yield c
    c.stop()


def _env(emu: Bitrix24Emulator) -> dict[str, str]:
    return {"AIRFLOW_CONN_BITRIX24_DEFAULT": json.dumps(emu.connection())}


def _reschedules(db_path: Path, dag_id: str, task_id: str) -> int:
    """How often the task was rescheduled (Airflow 3 keys task_reschedule by the TI's id)."""
    with closing(sqlite3.connect(db_path, timeout=1)) as conn:
        row = conn.execute(
            "SELECT COUNT(*) FROM task_reschedule r JOIN task_instance t ON r.ti_id = t.id "
            "WHERE t.dag_id=? AND t.task_id=?",
            (dag_id, task_id),
        ).fetchone()
    return int(row[0])


def _expected() -> list[dict[str, Any]]:
    return [{"id": i, "completed": True, "id_type": "int", "start_time_type": "DateTime"} for i in IDS]


def test_reschedule_mode_sensor_dag(
    airflow_runner: Any, dags_folder: Path, emu: Bitrix24Emulator, completer: Completer
) -> None:
    # complete once the sensor has been rescheduled at least once (read from the live SQLite DB)
    completer.start(lambda: _reschedules(airflow_runner.db_path, "sensor_reschedule", "wait_for_calls") >= 1)
    result = airflow_runner.run_dag(
        "sensor_reschedule", dags_folder, env=_env(emu), conf={"ids": IDS, "never": [99999]}
    )
    assert completer.done.is_set(), result.output[-3000:]
    assert result.state == "success", result.output[-5000:]
    assert result.task_state("wait_for_calls") == "success"
    assert result.task_state("wait_forever") == "skipped"  # timeout + soft_fail
    assert result.task_state("summarize") == "success"
    assert _reschedules(result.db_path, "sensor_reschedule", "wait_for_calls") >= 1
    assert [a["ID"] for a in result.xcom("wait_for_calls")] == IDS
    assert result.xcom("summarize") == _expected()


def test_deferrable_sensor_dag(
    airflow_runner: Any, dags_folder: Path, emu: Bitrix24Emulator, completer: Completer
) -> None:
    # the only sensor's first poke finds the activities open, so it defers; complete after that
    completer.start(lambda: int(emu.stats["requests"]) >= 1)
    result = airflow_runner.run_dag("sensor_deferrable", dags_folder, env=_env(emu), conf={"ids": IDS})
    assert completer.done.is_set(), result.output[-3000:]
    assert result.state == "success", result.output[-5000:]
    assert "running trigger in line" in result.output  # dags test ran the trigger in-process
    assert result.task_state("wait_for_calls") == "success"
    assert result.task_state("summarize") == "success"
    assert [a["ID"] for a in result.xcom("wait_for_calls")] == IDS
    assert result.xcom("summarize") == _expected()
    # the first poke, then the trigger's poll(s): its first comes max(poke_interval, 10 s) after deferral
    assert int(emu.stats["requests"]) >= 2


REAL_TRIGGERER = pytest.mark.skipif(
    os.environ.get("B24_E2E_TRIGGERER") != "1",
    reason="starts api-server + triggerer + LocalExecutor (~45 s; the fleet test covers this path by "
    "default); set B24_E2E_TRIGGERER=1",
)


def _deferred(db_path: Path, dag_id: str, count: int) -> Callable[[], bool]:
    """``ready()`` for the completer: ``count`` task instances of ``dag_id`` are deferred."""

    def ready() -> bool:
        with closing(sqlite3.connect(db_path, timeout=1)) as conn:
            row = conn.execute(
                "SELECT COUNT(*) FROM task_instance WHERE dag_id=? AND state='deferred'", (dag_id,)
            ).fetchone()
        return bool(row and row[0] >= count)

    return ready


def _run_with_real_triggerer(
    airflow_runner: Any,
    dags_folder: Path,
    emu: Bitrix24Emulator,
    completer: Completer,
    *,
    dag_id: str,
    conf: dict[str, Any],
    deferred: int,
) -> tuple[subprocess.CompletedProcess[str], str, dict[tuple[str, int], str]]:
    """``dags test --use-executor`` while a real triggerer and api-server run; the connection is in
    the metadata DB. Completes IDS once ``deferred`` task instances are deferred. Returns the
    ``dags test`` process, the trigger logs, and the task states by (task_id, map_index)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    secret = "b24-e2e-triggerer-0123456789abcdef"
    airflow_runner.dags_folder = dags_folder
    airflow_runner.extra_env.update(
        {
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": "2",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
            "AIRFLOW__API_AUTH__JWT_SECRET": secret,
            "AIRFLOW__API__SECRET_KEY": secret,
            "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "1",
        }
    )
    home = airflow_runner.path
    added = airflow_runner.cli(
        "connections", "add", "bitrix24_default", "--conn-json", json.dumps(emu.connection())
    )
    assert added.returncode == 0, added.stderr[-2000:]
    # no AIRFLOW_CONN_* from here on: the DB has the connection
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for name, args in (("api", ["api-server", "--port", str(port)]), ("triggerer", ["triggerer"])):
            with (home / f"{name}.log").open("wb") as log:
                procs.append(airflow_runner.popen(*args, log=log))
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v2/monitor/health", timeout=2)
                break
            except OSError:
                time.sleep(0.5)
        completer.start(_deferred(airflow_runner.db_path, dag_id, deferred))
        proc = airflow_runner.cli(
            "dags", "test", dag_id, "--use-executor", "--conf", json.dumps(conf), timeout=400
        )
        # the trigger runner did not die (Airflow 3.1: apache/airflow#64620 ends the triggerer process)
        assert procs[1].poll() is None, (home / "triggerer.log").read_text(errors="replace")[-4000:]
    finally:
        for p in procs:  # only the processes this test started (each in its own process group)
            stop_process_group(p, grace=30)
    triggerer_log = (home / "triggerer.log").read_text(errors="replace")
    assert "Response read out of order" not in triggerer_log, triggerer_log[-4000:]
    trigger_logs = "\n".join(p.read_text() for p in (home / "logs").rglob("*trigger*.log"))
    with closing(sqlite3.connect(airflow_runner.db_path)) as conn:
        states = {
            (task_id, map_index): state
            for task_id, map_index, state in conn.execute(
                "SELECT task_id, map_index, state FROM task_instance WHERE dag_id=?", (dag_id,)
            ).fetchall()
        }
    return proc, trigger_logs, states


@REAL_TRIGGERER
def test_deferrable_sensor_in_a_real_triggerer(
    airflow_runner: Any, dags_folder: Path, emu: Bitrix24Emulator, completer: Completer
) -> None:
    """The production path: ``airflow triggerer`` runs the trigger; the connection is in the metadata
    DB, so the trigger resolves it through the triggerer's supervisor (``aget_connection``, on the loop)."""
    proc, trigger_logs, states = _run_with_real_triggerer(
        airflow_runner, dags_folder, emu, completer, dag_id="sensor_deferrable", conf={"ids": IDS}, deferred=1
    )
    output = proc.stdout + proc.stderr
    assert completer.done.is_set(), output[-3000:]
    assert proc.returncode == 0, output[-3000:] + "\n--- trigger logs ---\n" + trigger_logs[-4000:]
    assert "Trigger fired event" in trigger_logs, trigger_logs[-3000:]
    assert "All 2 activities completed" in trigger_logs
    assert states == {("wait_for_calls", -1): "success", ("summarize", -1): "success"}


def test_mapped_deferrable_sensors_share_their_polls_in_a_real_triggerer(
    airflow_runner: Any, dags_folder: Path, emu: Bitrix24Emulator, completer: Completer
) -> None:
    """Four mapped deferrable sensors in one triggerer: their triggers share polls, each fires its own
    event and logs its own answer in its own trigger log (the DAG's ``collect`` task checks the rows)."""
    proc, trigger_logs, states = _run_with_real_triggerer(
        airflow_runner, dags_folder, emu, completer, dag_id="sensor_fleet", conf={}, deferred=4
    )
    output = proc.stdout + proc.stderr
    assert completer.done.is_set(), output[-3000:]
    assert proc.returncode == 0, output[-5000:]
    assert states == {**{("wait", i): "success" for i in range(4)}, ("collect", -1): "success"}
    assert trigger_logs.count("Trigger fired event") >= 4, trigger_logs[-3000:]
    finished = [line for line in trigger_logs.split("\n") if "All 1 activities completed" in line]
    assert len(finished) == 4  # each trigger says so itself
    shared = [int(n) for n in re.findall(r"poll shared by (\d+) triggers", trigger_logs)]
    assert shared and max(shared) >= 2, trigger_logs[-3000:]  # deferred together, polled together
