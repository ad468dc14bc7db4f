"""OpenLineage facets and hook lineage of real reads (HTTPS to the bundled emulator).

Each operator runs ``execute`` against the emulator, then ``get_openlineage_facets_on_complete``
is asserted as OpenLineage would serialise it: the input ``bitrix24://<host:port>`` /
``crm.activity`` with a schema of the selected fields and the rows read, and for the export the
file's dataset. The serialised facets never hold a secret of the connection.
"""

from __future__ import annotations

import asyncio
import importlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from openlineage.client.serde import Serde

from airflow_provider_b24._compat import AirflowFailException, TaskDeferred
from airflow_provider_b24.activities.fields import STAR_FIELDS
from airflow_provider_b24.hooks.bitrix24 import Bitrix24Hook
from airflow_provider_b24.operators.activity import Bitrix24GetActivitiesOperator
from airflow_provider_b24.operators.export import Bitrix24ExportActivitiesOperator
from airflow_provider_b24.sensors.activity import Bitrix24ActivitySensor
from airflow_provider_b24.testing import Bitrix24Emulator

FAST_EXTRA = {"max_retries": 0, "operating_max_wait": 0, "rate_limit": 0}
WINDOW = {"updated_from": "2024-01-01 00:00:00+00:00", "updated_to": "2025-01-01 00:00:00+00:00"}


class TI:
    def xcom_push(self, key: str, value: Any) -> None:
        pass


@pytest.fixture
def emu(bitrix24_emulator_factory: Callable[..., Bitrix24Emulator], monkeypatch: pytest.MonkeyPatch) -> Any:
    emulator = bitrix24_emulator_factory(activities=40, seed=4, rate_limit=None)
    conn = emulator.connection()
    conn["extra"] = {**conn["extra"], **FAST_EXTRA}
    monkeypatch.setenv("AIRFLOW_CONN_BITRIX24_DEFAULT", json.dumps(conn))
    return emulator


def namespace_of(emu: Bitrix24Emulator) -> str:
    return f"bitrix24://{urlsplit(emu.base_url).netloc}"


def as_json(lineage: Any) -> list[dict[str, Any]]:
    """Inputs and outputs as the OpenLineage client serialises them into an event."""
    return [json.loads(Serde.to_json(d)) for d in [*lineage.inputs, *lineage.outputs]]


def schema(dataset: dict[str, Any]) -> list[tuple[str, str | None]]:
    return [(f["name"], f.get("type")) for f in dataset["facets"]["schema"]["fields"]]


def test_get_activities_operator_reports_its_input(emu: Bitrix24Emulator) -> None:
    op = Bitrix24GetActivitiesOperator(
        task_id="get", activity_ids=[3, 1, 2, 999_999], select=["SUBJECT", "COMPLETED"], on_missing="ignore"
    )
    assert op.get_openlineage_facets_on_complete(None).inputs == []  # nothing read yet
    rows = op.execute({"ti": TI()})  # type: ignore[arg-type]
    assert len(rows) == 3

    lineage = op.get_openlineage_facets_on_complete(None)
    assert lineage.outputs == []
    (read,) = as_json(lineage)
    assert (read["namespace"], read["name"]) == (namespace_of(emu), "crm.activity")
    assert schema(read) == [("ID", "integer"), ("SUBJECT", "string"), ("COMPLETED", "char")]
    assert read["inputFacets"]["inputStatistics"]["rowCount"] == 3


def test_default_select_is_the_documented_star_set(emu: Bitrix24Emulator) -> None:
    op = Bitrix24GetActivitiesOperator(task_id="get", activity_ids=[1, 2])
    op.execute({"ti": TI()})  # type: ignore[arg-type]
    (read,) = as_json(op.get_openlineage_facets_on_complete(None))
    assert [name for name, _ in schema(read)] == list(STAR_FIELDS)
    assert read["inputFacets"]["inputStatistics"]["rowCount"] == 2


def test_a_failed_read_names_the_input_without_a_row_count(
    emu: Bitrix24Emulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    conn = emu.connection()
    conn["password"] = "wrongcode"  # the portal answers 401: nothing is read
    conn["extra"] = {**conn["extra"], **FAST_EXTRA}
    monkeypatch.setenv("AIRFLOW_CONN_BITRIX24_DEFAULT", json.dumps(conn))
    op = Bitrix24GetActivitiesOperator(task_id="get", activity_ids=[1, 2])
    with pytest.raises(AirflowFailException):
        op.execute({"ti": TI()})  # type: ignore[arg-type]
    (read,) = as_json(op.get_openlineage_facets_on_complete(None))  # OpenLineage's on-failure too
    assert (read["namespace"], read["name"]) == (namespace_of(emu), "crm.activity")
    assert "inputStatistics" not in read.get("inputFacets", {})

    export = Bitrix24ExportActivitiesOperator(task_id="export", path=str(tmp_path / "a.jsonl"), **WINDOW)
    with pytest.raises(AirflowFailException):
        export.execute({})  # type: ignore[arg-type]
    lineage = export.get_openlineage_facets_on_complete(None)
    assert lineage.outputs == []  # nothing was written
    (read,) = as_json(lineage)
    assert read["name"] == "crm.activity" and "inputStatistics" not in read.get("inputFacets", {})
    assert list(tmp_path.iterdir()) == []

    missing = Bitrix24GetActivitiesOperator(task_id="get", activity_ids=[1, 999_999])
    monkeypatch.setenv("AIRFLOW_CONN_BITRIX24_DEFAULT", json.dumps(emu.connection()))
    with pytest.raises(AirflowFailException, match="not returned"):
        missing.execute({"ti": TI()})  # type: ignore[arg-type]
    (read,) = as_json(missing.get_openlineage_facets_on_complete(None))
    assert read["inputFacets"]["inputStatistics"]["rowCount"] == 1  # what was read before failing


def test_sensor_reports_what_its_last_poke_read(emu: Bitrix24Emulator) -> None:
    sensor = Bitrix24ActivitySensor(task_id="wait", activity_ids=[5, 6], until="exists", poke_interval=0)
    assert sensor.poke({}).is_done is True  # type: ignore[arg-type]
    (read,) = as_json(sensor.get_openlineage_facets_on_complete(None))
    assert (read["namespace"], read["name"]) == (namespace_of(emu), "crm.activity")
    assert [name for name, _ in schema(read)] == list(STAR_FIELDS)
    assert read["inputFacets"]["inputStatistics"]["rowCount"] == 2

    completed = Bitrix24ActivitySensor(task_id="w2", activity_ids=[5], select=["SUBJECT"], poke_interval=0)
    emu.store.complete(5)
    assert completed.poke({}).is_done is True  # type: ignore[arg-type]
    (read,) = as_json(completed.get_openlineage_facets_on_complete(None))
    assert schema(read) == [("ID", "integer"), ("SUBJECT", "string"), ("COMPLETED", "char")]


def test_deferred_sensor_reports_after_the_trigger(emu: Bitrix24Emulator) -> None:
    sensor = Bitrix24ActivitySensor(task_id="wait", activity_ids=[7], deferrable=True, poke_interval=0.1)
    with pytest.raises(TaskDeferred) as info:
        sensor.execute({})  # type: ignore[arg-type]
    emu.store.complete(7)
    event = asyncio.run(asyncio.wait_for(_first(info.value.trigger), timeout=20))
    resumed = Bitrix24ActivitySensor(task_id="wait", activity_ids=[7], deferrable=True)  # a new process
    assert [a["ID"] for a in resumed.execute_complete({}, event.payload)] == [7]  # type: ignore[arg-type]
    (read,) = as_json(resumed.get_openlineage_facets_on_complete(None))
    assert read["namespace"] == namespace_of(emu)
    assert read["inputFacets"]["inputStatistics"]["rowCount"] == 1


async def _first(trigger: Any) -> Any:
    async for event in trigger.run():
        return event
    raise AssertionError("the trigger ended without an event")


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_export_reports_input_and_the_file(emu: Bitrix24Emulator, tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"out.{fmt}"
    op = Bitrix24ExportActivitiesOperator(
        task_id="export",
        path=str(path),
        format=fmt,
        select=["SUBJECT", "DEADLINE", "COMMUNICATIONS"],
        **WINDOW,
    )
    summary = op.execute({})  # type: ignore[arg-type]
    assert summary["rows"] > 0

    read, written = as_json(op.get_openlineage_facets_on_complete(None))
    assert (read["namespace"], read["name"]) == (namespace_of(emu), "crm.activity")
    assert read["inputFacets"]["inputStatistics"]["rowCount"] == summary["rows"]
    assert (written["namespace"], written["name"]) == ("file", str(path))
    assert written["outputFacets"]["outputStatistics"]["rowCount"] == summary["rows"]
    nested = "array" if fmt == "jsonl" else "string"
    assert schema(written) == [
        ("ID", "integer"),
        ("SUBJECT", "string"),
        ("DEADLINE", "timestamp"),
        ("COMMUNICATIONS", nested),
    ]


def test_export_declares_its_asset_and_describes_the_file_in_the_event(
    emu: Bitrix24Emulator, tmp_path: Path
) -> None:
    from airflow.sdk import Asset

    template = str(tmp_path) + "/{{ ds }}/activities.jsonl"
    op = Bitrix24ExportActivitiesOperator(task_id="export", path=template, **WINDOW)
    assert op.outlets == [Asset(uri=f"file://{tmp_path}")]  # the folder before the template
    fixed = Bitrix24ExportActivitiesOperator(task_id="fixed", path=str(tmp_path / "a.jsonl"), **WINDOW)
    assert fixed.outlets == [Asset(uri=f"file://{tmp_path}/a.jsonl")]
    own = Bitrix24ExportActivitiesOperator(task_id="own", path=template, outlets=[], **WINDOW)
    assert own.outlets == []

    op.path = str(tmp_path / "2024-03-01" / "activities.jsonl")  # as rendered
    events = OutletEvents()
    summary = op.execute({"outlet_events": events})  # type: ignore[arg-type]
    assert events.extra[f"file://{tmp_path}"] == {
        "path": f"file://{tmp_path}/2024-03-01/activities.jsonl",
        "rows": summary["rows"],
        "format": "jsonl",
        "updated_from": "2024-01-01T00:00:00+00:00",
        "updated_to": "2025-01-01T00:00:00+00:00",
    }


class OutletEvents:
    """``context["outlet_events"]``: an accessor with an ``extra`` dict per asset (by URI: on Airflow
    3.1 an ``Asset`` is not hashable)."""

    def __init__(self) -> None:
        self.extra: dict[str, dict[str, Any]] = {}

    def __getitem__(self, asset: Any) -> Any:
        class Accessor:
            extra = self.extra.setdefault(asset.uri, {})

        return Accessor


# -- secrets -------------------------------------------------------------------------------------
@pytest.mark.parametrize("oauth", [False, True])
def test_no_secret_in_any_facet(
    bitrix24_emulator_factory: Callable[..., Bitrix24Emulator],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    oauth: bool,
) -> None:
    emu = bitrix24_emulator_factory(activities=20, seed=2, rate_limit=None)
    conn = emu.oauth_connection() if oauth else emu.connection()
    if not oauth:  # the other webhook spelling: the full URL (code in the path) in extra
        conn["extra"]["webhook_url"] = f"{emu.base_url}/rest/{conn.pop('login')}/{conn.pop('password')}/"
    conn["extra"] = {**conn["extra"], **FAST_EXTRA}
    monkeypatch.setenv("AIRFLOW_CONN_BITRIX24_DEFAULT", json.dumps(conn))
    secrets = [emu.config.webhook_code, emu.config.client_secret]
    secrets += [v for k, v in conn["extra"].items() if k in ("access_token", "refresh_token", "webhook_url")]
    assert all(secrets)

    get = Bitrix24GetActivitiesOperator(task_id="get", activity_ids=[1, 2])
    get.execute({"ti": TI()})  # type: ignore[arg-type]
    sensor = Bitrix24ActivitySensor(task_id="wait", activity_ids=[1], until="exists", poke_interval=0)
    sensor.poke({})  # type: ignore[arg-type]
    export = Bitrix24ExportActivitiesOperator(task_id="export", path=str(tmp_path / "a.jsonl"), **WINDOW)
    export.execute({})  # type: ignore[arg-type]

    text = json.dumps(
        [as_json(task.get_openlineage_facets_on_complete(None)) for task in (get, sensor, export)]
    )
    assert "crm.activity" in text and namespace_of(emu) in text
    leaked = [secret for secret in secrets if secret in text]
    assert leaked == []


# -- hook lineage --------------------------------------------------------------------------------
@pytest.fixture
def collector(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A fresh, recording hook-lineage collector behind Airflow's global getter (3.1 and 3.3 paths)."""
    from airflow.providers.common.compat.sdk import HookLineageCollector

    fresh = HookLineageCollector()
    for module_name in ("airflow.sdk.lineage", "airflow.lineage.hook"):
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        monkeypatch.setattr(module, "get_hook_lineage_collector", lambda: fresh)
        break  # 3.2+ keeps it in airflow.sdk.lineage (the old path is a deprecated alias)
    yield fresh


def test_hook_reports_each_dataset_once_through_the_compat_collector(
    emu: Bitrix24Emulator, collector: Any
) -> None:
    from airflow.providers.common.compat.lineage.hook import get_hook_lineage_collector

    assert get_hook_lineage_collector() is collector  # what the hook reaches, on 3.1 and 3.3
    hook = Bitrix24Hook()
    rows = list(hook.iter_activities(filter={"TYPE_ID": 2}, select=["ID"]))
    hook.get_activity(rows[0]["ID"])
    hook.get_activities([1, 2, 3])
    hook.call("crm.activity.fields")  # no data: not reported
    hook.call("profile")
    new_id = hook.add_activity(
        {"OWNER_TYPE_ID": 2, "OWNER_ID": 1, "TYPE_ID": 4, "SUBJECT": "x", "RESPONSIBLE_ID": 1,
         "COMMUNICATIONS": [{"VALUE": "a@example.com", "ENTITY_ID": 1, "ENTITY_TYPE_ID": 3}]}
    )  # fmt: skip
    hook.delete_activity(new_id)
    hook.close()

    collected = collector.collected_assets
    uri = f"{namespace_of(emu)}/crm.activity"
    assert [(info.asset.uri, info.count, info.context) for info in collected.inputs] == [(uri, 1, hook)]
    assert [(info.asset.uri, info.count, info.context) for info in collected.outputs] == [(uri, 1, hook)]


def test_hook_assets_become_openlineage_datasets(emu: Bitrix24Emulator, collector: Any) -> None:
    """The provider's ``asset-uris`` entry lets OpenLineage translate the hook's bitrix24:// assets."""
    from airflow.providers.openlineage.extractors.manager import ExtractorManager

    hook = Bitrix24Hook()
    hook.get_activities([1])
    hook.close()
    lineage = ExtractorManager().get_hook_lineage()
    assert lineage is not None
    assert [(d.namespace, d.name) for d in lineage.inputs] == [(namespace_of(emu), "crm.activity")]
