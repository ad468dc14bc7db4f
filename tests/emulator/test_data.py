"""The data generator, the store API, JSON fixtures and the field catalogues."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from airflow_provider_b24.testing import DATA_FROM, DATA_TO, ActivityStore, Bitrix24Emulator
from airflow_provider_b24.testing.datagen import generate, populate
from airflow_provider_b24.testing.fields import ACTIVITY_FIELDS
from airflow_provider_b24.testing.timeutil import parse_datetime, parse_offset
from tests.emulator.conftest import Caller

TZ = parse_offset("+03:00")


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    return [row for row, _ in generate(3000, seed=1, timezone=TZ)]


def test_generator_is_deterministic() -> None:
    a = [row for row, _ in generate(200, seed=4, timezone=TZ)]
    b = [row for row, _ in generate(200, seed=4, timezone=TZ)]
    c = [row for row, _ in generate(200, seed=5, timezone=TZ)]
    assert a == b and a != c
    assert [r["ID"] for r in a] == [str(i) for i in range(1, 201)]


def test_generator_variety(rows: list[dict]) -> None:
    types = Counter(r["TYPE_ID"] for r in rows)
    assert set(types) == {"1", "2", "3", "4", "5", "6"}
    providers = {r["PROVIDER_ID"] for r in rows}
    assert {"VOXIMPLANT_CALL", "CRM_EMAIL", "CRM_MEETING", "CRM_TASKS_TASK", "CRM_TODO"} <= providers
    owners = {r["OWNER_TYPE_ID"] for r in rows}
    assert {"1", "2", "3", "4"} <= owners and any(int(o) >= 128 for o in owners)
    assert {r["COMPLETED"] for r in rows} == {"Y", "N"} and {r["STATUS"] for r in rows} == {"1", "2", "3"}
    todos = [r for r in rows if r["PROVIDER_ID"] == "CRM_TODO"]
    assert all(r["TYPE_ID"] == "6" for r in todos)
    assert any(r["DEADLINE"] == "9999-12-31T00:00:00+03:00" for r in todos)
    assert any(r["RESULT_SUM"] is not None for r in rows) and any(r["RESULT_SUM"] is None for r in rows)
    assert any(r["FILES"] for r in rows) and any(len(r["BINDINGS"]) > 1 for r in rows)
    assert any(r["SETTINGS"] != [] for r in rows) and any(r["PROVIDER_PARAMS"] != [] for r in rows)
    assert {r["DESCRIPTION_TYPE"] for r in rows} == {"1", "2", "3"}
    assert {c["TYPE"] for r in rows for c in r["COMMUNICATIONS"]} >= {"PHONE", "EMAIL"}
    assert any(not r["SUBJECT"].isascii() for r in rows)
    for field in ACTIVITY_FIELDS:
        assert field in rows[0], field


def test_last_updated_range_and_ordering(rows: list[dict]) -> None:
    for r in rows:
        updated = parse_datetime(r["LAST_UPDATED"], TZ)
        created = parse_datetime(r["CREATED"], TZ)
        assert updated is not None and created is not None
        assert DATA_FROM <= updated < DATA_TO and created <= updated
    calls = [r for r in rows if r["TYPE_ID"] == "2"]
    assert all(r["DEADLINE"] == r["START_TIME"] for r in calls)


def test_store_api_bumps_last_updated() -> None:
    now = [1_900_000_000.0]
    store = ActivityStore(clock=lambda: now[0])
    populate(store, 10, seed=1)
    new_id = store.add({"SUBJECT": "Новая задача", "TYPE_ID": 6, "OWNER_TYPE_ID": 2, "OWNER_ID": 5})
    assert new_id == 11 and len(store) == 11 and store.ids()[-1] == 11
    row = store.get(new_id)
    assert row is not None and row["LAST_UPDATED"] == row["CREATED"] == "2030-03-17T20:46:40+03:00"
    assert row["BINDINGS"] == [{"OWNER_TYPE_ID": "2", "OWNER_ID": "5"}]
    now[0] += 100
    store.complete(3)
    done = store.get(3)
    assert done is not None and done["COMPLETED"] == "Y" and done["STATUS"] in ("2", "3")
    assert done["LAST_UPDATED"] == "2030-03-17T20:48:20+03:00"
    store.update(4, {"SUBJECT": "changed", "OWNER_ID": 999})  # OWNER_ID is immutable
    changed = store.get(4)
    assert changed is not None and changed["SUBJECT"] == "changed" and changed["OWNER_ID"] != "999"
    store.delete(5)
    assert 5 not in store and store.get(5) is None and len(store) == 10
    store.set_hidden(6)
    assert store.is_hidden(6)


def test_store_changes_visible_over_http(fresh: Caller) -> None:
    store = fresh.emu.store
    new_id = store.add({"SUBJECT": "live", "TYPE_ID": 2, "OWNER_TYPE_ID": 3, "OWNER_ID": 1})
    assert fresh.ok("crm.activity.get", {"id": new_id})["result"]["SUBJECT"] == "live"
    store.delete(new_id)
    assert fresh.post("crm.activity.get", {"id": new_id}).status_code == 400


def test_add_update_delete_over_http(fresh: Caller) -> None:
    fields = {
        "OWNER_TYPE_ID": 2,
        "OWNER_ID": 10,
        "TYPE_ID": 2,
        "SUBJECT": "Звонок клиенту",
        "RESPONSIBLE_ID": 1,
        "START_TIME": "2025-02-01T10:00:00+00:00",
        "COMMUNICATIONS": [{"VALUE": "+79990001122", "TYPE": "PHONE", "ENTITY_TYPE_ID": 3, "ENTITY_ID": 5}],
    }
    body = fresh.ok("crm.activity.add", {"fields": fields})
    new_id = body["result"]
    assert isinstance(new_id, int)
    row = fresh.ok("crm.activity.get", {"id": new_id})["result"]
    assert row["START_TIME"] == "2025-02-01T13:00:00+03:00" and row["DEADLINE"] == row["START_TIME"]
    assert fresh.ok("crm.activity.update", {"id": new_id, "fields": {"COMPLETED": "Y"}})["result"] is True
    row = fresh.ok("crm.activity.get", {"id": new_id})["result"]
    assert row["COMPLETED"] == "Y" and row["STATUS"] == "2"
    comms = fresh.ok("crm.activity.list", {"filter": {"ID": new_id}, "select": ["COMMUNICATIONS"]})["result"]
    assert comms[0]["COMMUNICATIONS"][0]["VALUE"] == "+79990001122"
    assert fresh.ok("crm.activity.delete", {"id": new_id})["result"] is True
    assert fresh.post("crm.activity.get", {"id": new_id}).json()["error_description"] == "Not found"


def test_save_and_load_fixture(tmp_path: Path, fresh: Caller) -> None:
    fresh.emu.store.set_hidden(2)
    path = tmp_path / "activities.json"
    fresh.emu.store.save(path)
    data = json.loads(path.read_text(encoding="utf-8"))
    assert len(data["activities"]) == 200 and data["hidden"] == [2] and data["timezone"] == "+03:00"
    with Bitrix24Emulator(data=path) as emu:
        assert len(emu.store) == 200
        assert emu.store.get(17) == fresh.emu.store.get(17)
        assert emu.store.is_hidden(2)
    # a bare list of partial rows works too
    path.write_text(json.dumps([{"ID": "42", "SUBJECT": "only", "TYPE_ID": "2"}]), encoding="utf-8")
    store = ActivityStore()
    store.load(path)
    row = store.get(42)
    assert store.ids() == [42] and row is not None and row["SETTINGS"] == [] and row["COMPLETED"] == "N"


def test_fields_catalogue(api: Caller) -> None:
    fields = api.ok("crm.activity.fields")["result"]
    assert set(fields) == set(ACTIVITY_FIELDS)
    assert fields["ID"] == {
        "type": "integer",
        "isRequired": False,
        "isReadOnly": True,
        "isImmutable": False,
        "isMultiple": False,
        "isDynamic": False,
        "title": "ID",
    }
    assert fields["TYPE_ID"]["isRequired"] and fields["TYPE_ID"]["isImmutable"]
    assert fields["WEBDAV_ELEMENTS"]["isDeprecated"] is True and "isDeprecated" not in fields["FILES"]
    assert (
        fields["COMMUNICATIONS"]["isMultiple"]
        and fields["COMMUNICATIONS"]["type"] == "crm_activity_communication"
    )
    assert fields["LAST_UPDATED"]["type"] == "datetime" and fields["END_TIME"]["title"] == "Deadline"
    comm = api.ok("crm.activity.communication.fields")["result"]
    assert set(comm) == {"ID", "ACTIVITY_ID", "ENTITY_ID", "ENTITY_TYPE_ID", "TYPE", "VALUE"}
    assert comm["ACTIVITY_ID"]["title"] == "Case"


def test_portal_methods(api: Caller) -> None:
    assert api.ok("profile")["result"]["ID"] == "1"
    assert api.ok("scope")["result"] == ["crm", "user"]
    assert api.ok("app.info")["result"]["LICENSE"]
    assert api.ok("server.time")["result"].endswith("+03:00")
    assert api.ok("user.current")["result"]["ID"] == "1"


def test_other_timezone(bitrix24_emulator_factory: object) -> None:
    emu: Bitrix24Emulator = bitrix24_emulator_factory(activities=20, timezone="-05:00")  # type: ignore[operator]
    row = Caller(emu).ok("crm.activity.get", {"id": 1})["result"]
    assert row["CREATED"].endswith("-05:00")
