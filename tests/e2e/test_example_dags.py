"""The example DAGs of ``dags_examples/``, run for real with ``airflow dags test`` against the emulator.

Each test starts an in-process emulator, points ``AIRFLOW_CONN_BITRIX24_DEFAULT`` at it and checks the
run's task states and XComs (typed values), the requests the emulator served and the report file.
Expected numbers are computed here from the emulator's raw wire rows, independently of the provider's
parsing. The last test runs ``scripts/demo.py`` (what ``make demo`` runs).
"""

from __future__ import annotations

import csv
import json
import os
import re
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

import pendulum
import pytest

from airflow_provider_b24.testing import Bitrix24Emulator

pytestmark = pytest.mark.e2e

REPO_ROOT = Path(__file__).resolve().parents[2]
DAGS = REPO_ROOT / "dags_examples"
AS_OF = "2024-07-01T00:00:00+00:00"
PORTAL_OFFSET_S = 3 * 3600  # the emulator's default portal time zone, +03:00


@pytest.fixture
def emulator() -> Iterator[Bitrix24Emulator]:
    with Bitrix24Emulator(activities=600, seed=3) as emu:
        yield emu


def conn_env(emu: Bitrix24Emulator, **extra: str) -> dict[str, str]:
    return {"AIRFLOW_CONN_BITRIX24_DEFAULT": json.dumps(emu.connection()), **extra}


def when(text: str | None) -> pendulum.DateTime | None:
    """A wire datetime, independently parsed; the 9999-12-31 'no deadline' is None."""
    if not text or text.startswith("9999-12-31"):
        return None
    value = pendulum.parse(text)
    assert isinstance(value, pendulum.DateTime)
    return value


def expected_report(rows: list[Mapping[str, Any]], as_of: pendulum.DateTime) -> dict[str, Any]:
    """Per-user stats and call totals computed from raw wire rows (strings)."""
    per_user: dict[int, dict[str, int]] = {}
    calls = seconds = 0
    overdue_ids: list[int] = []
    for row in rows:
        user = int(row["RESPONSIBLE_ID"])
        stats = per_user.setdefault(
            user,
            {
                "responsible_id": user,
                "activities": 0,
                "calls": 0,
                "call_seconds": 0,
                "open": 0,
                "overdue_open": 0,
            },
        )
        stats["activities"] += 1
        if row["TYPE_ID"] == "2":
            start, end = when(row["START_TIME"]), when(row["END_TIME"])
            duration = max(0, int((end - start).total_seconds())) if start and end else 0
            stats["calls"] += 1
            stats["call_seconds"] += duration
            calls += 1
            seconds += duration
        if row["COMPLETED"] != "Y":
            stats["open"] += 1
            deadline = when(row["DEADLINE"])
            if deadline is not None and deadline < as_of:
                stats["overdue_open"] += 1
                overdue_ids.append(int(row["ID"]))
    return {
        "per_user": [per_user[u] for u in sorted(per_user)],
        "calls": calls,
        "seconds": seconds,
        "overdue_ids": overdue_ids,
    }


def assert_typed(activity: Mapping[str, Any], raw: Mapping[str, Any]) -> None:
    assert activity["ID"] == int(raw["ID"]) and type(activity["ID"]) is int
    assert type(activity["TYPE_ID"]) is int and activity["TYPE_ID"] == int(raw["TYPE_ID"])
    assert type(activity["RESPONSIBLE_ID"]) is int
    assert activity["COMPLETED"] is (raw["COMPLETED"] == "Y")
    start = activity["START_TIME"]  # only DEADLINE and END_TIME turn a 9999-12-31 into None
    assert isinstance(start, pendulum.DateTime)
    assert start == pendulum.parse(raw["START_TIME"])
    assert start.utcoffset().total_seconds() == PORTAL_OFFSET_S
    assert activity["DEADLINE"] == when(raw["DEADLINE"])


def assert_no_warnings_from_us(output: str) -> None:
    """Airflow logs Python warnings as ``[py.warnings] category=... filename=...``: none may be ours."""
    ours = [
        line
        for line in output.splitlines()
        if "py.warnings" in line and re.search(r"filename=\S*(dags_examples|airflow_provider_b24)/", line)
    ]
    assert ours == []


def pool_rows(db: Path, dag_id: str, task_id: str) -> list[tuple[int, str]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(
            "SELECT map_index, pool FROM task_instance WHERE dag_id=? AND task_id=? ORDER BY map_index",
            (dag_id, task_id),
        ).fetchall()


# ---------------------------------------------------------------------------------------- by ID
def test_activities_by_id_from_params(airflow_runner, emulator: Bitrix24Emulator, tmp_path: Path) -> None:
    ids = [*range(400, 0, -1), 900_001]  # descending input order, and one ID that does not exist
    report_dir = tmp_path / "out"
    before = emulator.stats["requests"]
    result = airflow_runner.run_dag(
        "b24_activities_by_id",
        DAGS,
        env=conn_env(emulator),
        conf={"activity_ids": ids, "as_of": AS_OF, "report_dir": str(report_dir)},
    )
    assert result.state == "success", result.output[-4000:]
    assert_no_warnings_from_us(result.output)
    assert {task: state for (task, _), state in result.task_states.items()} == {
        "find_activity_ids": "success",
        "fetch_activities": "success",
        "per_user_stats": "success",
        "overdue_open": "success",
        "call_totals": "success",
        "write_report": "success",
    }
    assert emulator.stats["requests"] - before == 1  # 400 IDs: one batched request

    assert result.xcom("find_activity_ids") == ids
    activities = result.xcom("fetch_activities")
    assert [a["ID"] for a in activities] == ids[:-1]  # input order, the missing one left out
    assert result.xcom("fetch_activities", key="missing_ids") == [900_001]
    raw = [emulator.store.get(i) for i in ids[:-1]]
    for activity, row in zip(activities, raw, strict=True):
        assert_typed(activity, row)
        assert set(activity) == {
            "ID", "TYPE_ID", "SUBJECT", "RESPONSIBLE_ID", "OWNER_TYPE_ID", "OWNER_ID",
            "START_TIME", "END_TIME", "DEADLINE", "COMPLETED", "DIRECTION",
        }  # fmt: skip

    expected = expected_report(raw, pendulum.parse(AS_OF))
    assert result.xcom("per_user_stats") == expected["per_user"]
    totals = result.xcom("call_totals")
    assert totals["calls"] == expected["calls"] > 0
    assert totals["total_seconds"] == expected["seconds"] > 0
    assert isinstance(totals["average_seconds"], Decimal)
    assert totals["average_seconds"] == (Decimal(expected["seconds"]) / expected["calls"]).quantize(
        Decimal("0.1")
    )

    overdue = result.xcom("overdue_open")
    assert 0 < len(overdue) <= 10
    assert {o["ID"] for o in overdue} <= set(expected["overdue_ids"])
    deadlines = [o["DEADLINE"] for o in overdue]
    assert all(isinstance(d, pendulum.DateTime) and d < pendulum.parse(AS_OF) for d in deadlines)
    assert deadlines == sorted(deadlines)
    assert all(type(o["days_overdue"]) is int for o in overdue)

    path = report_dir / "report.csv"
    assert result.xcom("write_report") == str(path)
    with path.open(encoding="utf-8") as handle:
        lines = list(csv.DictReader(handle))
    assert lines[-1]["responsible_id"] == "TOTAL"
    assert [{k: int(v) for k, v in line.items()} for line in lines[:-1]] == expected["per_user"]
    assert int(lines[-1]["activities"]) == 400
    assert int(lines[-1]["call_seconds"]) == expected["seconds"]


def test_activities_by_id_looks_up_an_owner(airflow_runner, emulator: Bitrix24Emulator) -> None:
    """No IDs given: they are found for a deal; no as_of, no report_dir: the run's own time and folder."""
    call = {
        "OWNER_TYPE_ID": 2,
        "OWNER_ID": 987_654,
        "TYPE_ID": 2,
        "RESPONSIBLE_ID": 5,
        "COMPLETED": "N",
        "START_TIME": "2024-06-01T10:00:00+03:00",
        "END_TIME": "2024-06-01T10:01:30+03:00",  # 90 s
    }
    added = [emulator.store.add({**call, "SUBJECT": f"Call {n}"}) for n in range(3)]
    result = airflow_runner.run_dag(
        "b24_activities_by_id", DAGS, env=conn_env(emulator), conf={"owner_type_id": 2, "owner_id": 987_654}
    )
    assert result.state == "success", result.output[-4000:]
    assert_no_warnings_from_us(result.output)
    assert result.xcom("find_activity_ids") == sorted(added, reverse=True)  # newest first
    assert [a["ID"] for a in result.xcom("fetch_activities")] == sorted(added, reverse=True)
    assert result.xcom("fetch_activities", key="missing_ids") == []
    # Overdue is measured against the run's time (2024 deadlines are long past).
    assert [o["ID"] for o in result.xcom("overdue_open")] == sorted(added)
    run_folder = re.sub(r"[^A-Za-z0-9._-]", "_", result.run_id)
    path = airflow_runner.path / "reports" / "b24_activities_by_id" / run_folder / "report.csv"
    assert result.xcom("write_report") == str(path)
    assert path.read_text(encoding="utf-8").splitlines() == [
        "responsible_id,activities,calls,call_seconds,open,overdue_open",
        "5,3,3,270,3,3",
        "TOTAL,3,3,270,3,3",
    ]


# ---------------------------------------------------------------------------------------- sensor
def test_wait_for_completion_defers_until_the_call_is_completed(
    airflow_runner, emulator: Bitrix24Emulator
) -> None:
    call_id = next(
        i
        for i in emulator.store.ids()
        if emulator.store.get(i)["TYPE_ID"] == "2" and emulator.store.get(i)["COMPLETED"] == "N"
    )
    baseline = emulator.stats["requests"]
    done = threading.Event()
    completed_after: list[int] = []

    def complete_when_polled() -> None:
        """Complete the call once the sensor has poked and the trigger has polled at least twice."""
        deadline = time.monotonic() + 90
        while not done.is_set() and time.monotonic() < deadline:
            if emulator.stats["requests"] - baseline >= 3:
                completed_after.append(emulator.stats["requests"] - baseline)
                emulator.store.complete(call_id)
                return
            time.sleep(0.1)

    thread = threading.Thread(target=complete_when_polled, daemon=True)
    thread.start()
    try:
        result = airflow_runner.run_dag(
            "b24_wait_for_completion",
            DAGS,
            env=conn_env(emulator, B24_EXAMPLE_POKE_INTERVAL="0.5", B24_EXAMPLE_WAIT_TIMEOUT="90"),
            conf={"activity_id": call_id},
        )
    finally:
        done.set()
        thread.join(5)
    assert result.state == "success", result.output[-4000:]
    assert_no_warnings_from_us(result.output)
    assert result.task_state("wait_for_call") == "success"
    assert result.task_state("follow_up") == "success"
    assert completed_after, "the sensor never polled the emulator"
    assert "running trigger in line" in result.output  # it deferred; the trigger did the waiting
    polls = emulator.stats["requests"] - baseline
    assert polls > completed_after[0]  # at least one poll saw the completed call

    pushed = result.xcom("wait_for_call")
    assert [a["ID"] for a in pushed] == [call_id]
    assert pushed[0]["COMPLETED"] is True

    raw = emulator.store.get(call_id)
    follow = result.xcom("follow_up")
    start, end = when(raw["START_TIME"]), when(raw["END_TIME"])
    assert follow == {
        "ID": call_id,
        "is_call": True,
        "COMPLETED": True,
        "RESPONSIBLE_ID": int(raw["RESPONSIBLE_ID"]),
        "SUBJECT": raw["SUBJECT"],
        "END_TIME": end,
        "duration_seconds": int((end - start).total_seconds()),
    }
    assert isinstance(follow["END_TIME"], pendulum.DateTime)


# ---------------------------------------------------------------------------------------- mapped
def test_mapped_fetch_fans_out_in_the_portal_pool(airflow_runner, emulator: Bitrix24Emulator) -> None:
    created = airflow_runner.cli("pools", "set", "bitrix24_portal", "2", "Bitrix24 portal request budget")
    assert created.returncode == 0, created.stdout + created.stderr
    ids = [*range(1, 251), 900_001]
    before = emulator.stats["requests"]
    result = airflow_runner.run_dag(
        "b24_mapped_fetch", DAGS, env=conn_env(emulator), conf={"activity_ids": ids, "chunk_size": 100}
    )
    assert result.state == "success", result.output[-4000:]
    assert_no_warnings_from_us(result.output)
    assert emulator.stats["requests"] - before == 3  # one request per chunk
    assert result.xcom("chunk_ids") == [ids[:100], ids[100:200], ids[200:]]
    assert [result.task_state("fetch_chunk", i) for i in range(3)] == ["success"] * 3
    assert pool_rows(result.db_path, "b24_mapped_fetch", "fetch_chunk") == [
        (0, "bitrix24_portal"),
        (1, "bitrix24_portal"),
        (2, "bitrix24_portal"),
    ]
    with sqlite3.connect(result.db_path) as conn:
        assert conn.execute("SELECT slots FROM slot_pool WHERE pool='bitrix24_portal'").fetchone() == (2,)

    chunks = result.xcoms("fetch_chunk")
    assert sorted(chunks) == [0, 1, 2]
    assert [[a["ID"] for a in chunks[i]] for i in range(3)] == [ids[:100], ids[100:200], ids[200:250]]
    for activity in chunks[1]:
        assert type(activity["ID"]) is int and type(activity["COMPLETED"]) is bool
    assert result.xcoms("fetch_chunk", key="missing_ids") == {0: [], 1: [], 2: [900_001]}

    raw = [emulator.store.get(i) for i in range(1, 251)]
    assert result.xcom("combine") == {
        "chunks": 3,
        "fetched": 250,
        "calls": sum(r["TYPE_ID"] == "2" for r in raw),
        "completed": sum(r["COMPLETED"] == "Y" for r in raw),
        "missing": 1,
    }


# ---------------------------------------------------------------------------------------- demo
def test_demo_script(tmp_path: Path) -> None:
    """``make demo`` end to end: exit 0, the promised summary, and no process left behind."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_", "B24_"))}
    env["B24_DEMO_DIR"] = str(tmp_path / "demo")
    began = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, str(REPO_ROOT / "scripts" / "demo.py")],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=tmp_path,
    )
    try:
        out, _ = proc.communicate(timeout=280)
    except subprocess.TimeoutExpired:
        proc.terminate()  # SIGTERM: the demo stops its emulator and Airflow processes on the way out
        out, _ = proc.communicate(timeout=60)
        pytest.fail("the demo took longer than 280 s:\n" + out[-5000:])
    took = time.monotonic() - began
    assert proc.returncode == 0, out[-5000:]
    assert "asked for 3,002 IDs -> fetched 3,000 activities in 2 HTTP requests" in out
    assert "missing_ids XCom: [999998, 999999]" in out
    header = re.search(r"^ +ID +TYPE_ID +COMPLETED .*\n +(.*)\n +1 ", out, re.M)  # the typed-rows table
    assert header, out[-3000:]
    assert header.group(1).split()[:4] == ["int", "int", "bool", "int"]
    assert "DateTime" in header.group(1)
    assert "b24_wait_for_completion: success" in out
    report = re.search(r"report: (\S+report\.csv)", out)
    assert report, out[-3000:]
    report_path = tmp_path / report.group(1)  # printed relative to the demo's working directory
    assert report_path.is_file()
    assert report_path.resolve().is_relative_to((tmp_path / "demo").resolve())
    assert report_path.read_text(encoding="utf-8").startswith("responsible_id,activities,calls,")
    pid = int(re.search(r"pid (\d+)", out).group(1))  # the emulator's
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert took < 240
