"""OpenLineage in real ``airflow dags test`` runs: the file transport captures every event.

``lineage_reads`` (tests/e2e/dags/lineage_dags.py) reads Bitrix24 in every way the provider offers:
the operator, the sensor, ``Bitrix24Hook`` inside a ``@task`` (hook lineage) and the export. The
example DAG ``b24_incremental_export`` writes its interval's file and records an asset event. The
captured events must name the Bitrix24 input (``bitrix24://<host:port>`` / ``crm.activity``) and
the export's output file, and hold no secret of the connection.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from airflow_provider_b24.testing import Bitrix24Emulator

pytestmark = pytest.mark.e2e

REPO_ROOT = Path(__file__).resolve().parents[2]
DAGS = Path(__file__).parent / "dags"
EXAMPLE = REPO_ROOT / "dags_examples" / "b24_incremental_export.py"


def openlineage_env(events: Path) -> dict[str, str]:
    """The OpenLineage provider's file transport: one JSON event per line in ``events``."""
    return {
        "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(
            {"type": "file", "log_file_path": str(events), "append": True}
        ),
        "AIRFLOW__OPENLINEAGE__NAMESPACE": "b24-e2e",
    }


def completed(events: Path) -> dict[str, dict[str, Any]]:
    """The COMPLETE event of each task, by task ID (the DAG's own event left out)."""
    found = {}
    for line in events.read_text(encoding="utf-8").splitlines():
        event = json.loads(line)
        task_id = event["job"]["name"].partition(".")[2]
        if event["eventType"] == "COMPLETE" and task_id:
            found[task_id] = event
    return found


def names(datasets: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(d["namespace"], d["name"]) for d in datasets]


def rows_read(event: dict[str, Any]) -> int:
    (dataset,) = event["inputs"]
    return int(dataset["inputFacets"]["inputStatistics"]["rowCount"])


def secrets_of(emu: Bitrix24Emulator) -> list[str]:
    return [emu.config.webhook_code, emu.config.client_secret, f"/rest/{emu.config.user_id}/"]


def test_every_read_of_bitrix24_is_in_the_openlineage_events(
    airflow_runner: Any, bitrix24_emulator_factory: Callable[..., Bitrix24Emulator], tmp_path: Path
) -> None:
    emu = bitrix24_emulator_factory(activities=30, seed=3, rate_limit=None)
    dags = tmp_path / "dags"
    dags.mkdir()
    shutil.copy(DAGS / "lineage_dags.py", dags / "lineage_dags.py")
    events = tmp_path / "openlineage.jsonl"
    export = tmp_path / "exports" / "activities.jsonl"
    env = {
        "AIRFLOW_CONN_BITRIX24_DEFAULT": json.dumps(emu.connection()),
        "B24_LINEAGE_EXPORT": str(export),
        **openlineage_env(events),
    }

    result = airflow_runner.run_dag("lineage_reads", dags, env=env)

    assert result.state == "success", result.output[-5000:]
    bitrix24 = (f"bitrix24://{urlsplit(emu.base_url).netloc}", "crm.activity")
    found = completed(events)
    assert set(found) == {"get_activities", "wait_for_activities", "read_with_the_hook", "export_activities"}
    for task_id, event in found.items():
        assert names(event["inputs"]) == [bitrix24], task_id
    assert rows_read(found["get_activities"]) == 3
    assert rows_read(found["wait_for_activities"]) == 2
    get_schema = found["get_activities"]["inputs"][0]["facets"]["schema"]["fields"]
    assert [(f["name"], f["type"]) for f in get_schema] == [
        ("ID", "integer"),
        ("SUBJECT", "string"),
        ("TYPE_ID", "crm_enum_activitytype"),
    ]
    rows = len(export.read_text(encoding="utf-8").splitlines())
    exported = found["export_activities"]
    assert rows_read(exported) == rows > 0
    assert names(exported["outputs"]) == [("file", str(export))]
    (output,) = exported["outputs"]
    assert output["outputFacets"]["outputStatistics"]["rowCount"] == rows
    assert [f["name"] for f in output["facets"]["schema"]["fields"]] == [
        "ID",
        "SUBJECT",
        "LAST_UPDATED",
        "COMMUNICATIONS",
    ]
    assert found["get_activities"]["outputs"] == []
    # The hook in a plain task: its input comes from hook lineage (no schema: the hook cannot know it).
    assert "schema" not in found["read_with_the_hook"]["inputs"][0].get("facets", {})

    text = events.read_text(encoding="utf-8")
    assert [secret for secret in secrets_of(emu) if secret in text] == []


def test_the_example_export_emits_lineage_and_an_asset_event(
    airflow_runner: Any, bitrix24_emulator_factory: Callable[..., Bitrix24Emulator], tmp_path: Path
) -> None:
    emu = bitrix24_emulator_factory(activities=300, seed=7, rate_limit=None)
    dags = tmp_path / "dags"
    dags.mkdir()
    shutil.copy(EXAMPLE, dags / EXAMPLE.name)
    root = tmp_path / "exports"
    events = tmp_path / "openlineage.jsonl"
    env = {
        "AIRFLOW_CONN_BITRIX24_DEFAULT": json.dumps(emu.connection()),
        "B24_EXPORT_ROOT": str(root),
        **openlineage_env(events),
    }

    result = airflow_runner.run_dag(
        "b24_incremental_export", dags, env=env, logical_date="2024-03-01T05:00:00+00:00"
    )

    assert result.state == "success", result.output[-5000:]
    path = root / "2024-03-01" / "activities_20240301T040000.jsonl"
    summary = result.xcom("export_activities")
    exported = completed(events)["export_activities"]
    assert names(exported["inputs"]) == [(f"bitrix24://{urlsplit(emu.base_url).netloc}", "crm.activity")]
    assert names(exported["outputs"]) == [("file", str(path))]
    assert rows_read(exported) == summary["rows"]
    # The asset: the export folder, with the file of this run in the event's extra.
    asset_events = airflow_runner.rows(
        "SELECT a.uri, e.extra FROM asset_event e JOIN asset a ON a.id = e.asset_id "
        "WHERE e.source_dag_id = ? AND e.source_task_id = ?",
        "b24_incremental_export",
        "export_activities",
    )
    assert [(uri, json.loads(extra)) for uri, extra in asset_events] == [
        (
            f"file://{root}",
            {
                "path": f"file://{path}",
                "rows": summary["rows"],
                "format": "jsonl",
                "updated_from": "2024-03-01T04:00:00+00:00",
                "updated_to": "2024-03-01T05:00:00+00:00",
            },
        )
    ]
    text = events.read_text(encoding="utf-8")
    assert [secret for secret in secrets_of(emu) if secret in text] == []
