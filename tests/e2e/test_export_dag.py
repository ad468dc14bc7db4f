"""The example DAG ``b24_incremental_export`` for one hourly interval, with ``airflow dags test``.

An in-process emulator (portal offset +03:00) holds activities updated inside the 04:00-05:00 UTC
interval, some exactly on its bounds, and many outside it. The run must write exactly the rows with
``04:00 <= LAST_UPDATED < 05:00`` to the interval's file, leave no temporary file, and return the
small summary through XCom.
"""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_b24.testing import Bitrix24Emulator

pytestmark = pytest.mark.e2e

REPO_ROOT = Path(__file__).resolve().parents[2]
DAG_FILE = REPO_ROOT / "dags_examples" / "b24_incremental_export.py"
START = datetime(2024, 3, 1, 4, tzinfo=UTC)
END = START + timedelta(hours=1)


@pytest.fixture
def emulator() -> Bitrix24Emulator:
    emu = Bitrix24Emulator(activities=2000, seed=7, timezone="+03:00")  # spread over 2024
    second = timedelta(seconds=1)
    moments = [START - second, START, START + second, END - second, END, END + second]
    moments += [START + n * timedelta(seconds=13) for n in range(270)]  # all inside, 04:00:00 again
    for n, moment in enumerate(moments):
        activity_id = emu.store.add({"SUBJECT": f"placed {n}", "TYPE_ID": str(1 + n % 6)})
        emu.store.touch(activity_id, moment.astimezone(emu.store.tz).isoformat())
    with emu:
        yield emu


def expected_ids(emu: Bitrix24Emulator) -> list[int]:
    """Independently of the provider: the raw rows whose LAST_UPDATED is in [START, END)."""
    ids = []
    for activity_id in emu.store.ids():
        row = emu.store.get(activity_id)
        assert row is not None
        if START <= datetime.fromisoformat(row["LAST_UPDATED"]) < END:
            ids.append(activity_id)
    return ids


def test_one_hourly_interval_end_to_end(
    airflow_runner: Any, emulator: Bitrix24Emulator, tmp_path: Path
) -> None:
    dags = tmp_path / "dags"
    dags.mkdir()
    shutil.copy(DAG_FILE, dags / DAG_FILE.name)
    root = tmp_path / "exports"
    env = {
        "AIRFLOW_CONN_BITRIX24_DEFAULT": json.dumps(emulator.connection()),
        "B24_EXPORT_ROOT": f"file://{root}",
    }
    expected = expected_ids(emulator)
    assert len(expected) >= 273  # the placed rows, plus whatever the generator put in that hour
    before = int(emulator.stats["requests"])

    result = airflow_runner.run_dag(
        "b24_incremental_export", dags, env=env, logical_date="2024-03-01T05:00:00+00:00"
    )

    assert result.state == "success", result.output[-5000:]
    assert result.task_state("export_activities") == "success"
    assert result.task_state("report") == "success"
    summary = result.xcom("export_activities")
    path = root / "2024-03-01" / "activities_20240301T040000.jsonl"
    served = int(emulator.stats["requests"]) - before
    assert summary == {
        "path": f"file://{path}",
        "rows": len(expected),
        "requests": served,
        "updated_from": "2024-03-01T04:00:00+00:00",
        "updated_to": "2024-03-01T05:00:00+00:00",
    }
    # Keyset pages: one plain first page, then 2,500 rows per batch; a short page ends it.
    assert served == (1 if len(expected) < 50 else 2 + (len(expected) - 50) // 2500)
    lines = path.read_text(encoding="utf-8").splitlines()
    rows = [json.loads(line) for line in lines]
    assert [row["ID"] for row in rows] == expected
    assert all(row["LAST_UPDATED"].endswith("+03:00") for row in rows)
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary sibling left
    report = result.xcom("report")
    assert report["rows"] == len(expected)
    assert sum(report["by_type"].values()) == len(expected)
