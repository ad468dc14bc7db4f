"""crm.activity.list: filter operators, datetime instants, order, select, BINDINGS, pagination."""

from __future__ import annotations

import datetime as dt
from typing import Any

from airflow_provider_b24.testing import Bitrix24Emulator
from airflow_provider_b24.testing.timeutil import parse_datetime, parse_offset
from tests.emulator.conftest import Caller

TZ = parse_offset("+03:00")


def _all(api: Caller, params: dict[str, Any]) -> list[dict[str, Any]]:
    """Every row via start offsets (the documented paging)."""
    rows: list[dict[str, Any]] = []
    start: int | None = 0
    while start is not None:
        body = api.ok("crm.activity.list", {**params, "start": start})
        rows.extend(body["result"])
        start = body.get("next")
    return rows


def _store_rows(emu: Bitrix24Emulator) -> list[dict[str, Any]]:
    return [r for r in (emu.store.get(i) for i in emu.store.ids()) if r is not None]


def test_default_order_is_start_time_ascending(api: Caller) -> None:
    rows = api.ok("crm.activity.list", {"select": ["ID", "START_TIME"]})["result"]
    instants = [parse_datetime(r["START_TIME"], TZ) for r in rows]
    assert instants == sorted(instants)  # type: ignore[type-var]


def test_order_desc_and_multi_key(api: Caller) -> None:
    rows = _all(api, {"order": {"TYPE_ID": "asc", "ID": "desc"}, "select": ["ID", "TYPE_ID"]})
    keys = [(int(r["TYPE_ID"]), -int(r["ID"])) for r in rows]
    assert keys == sorted(keys) and len(rows) == 1000


def test_select_star_and_explicit_multi_fields(api: Caller) -> None:
    star = api.ok("crm.activity.list", {"select": ["*"]})["result"][0]
    assert "COMMUNICATIONS" not in star and "FILES" not in star and "BINDINGS" not in star
    named = api.ok("crm.activity.list", {"select": ["*", "COMMUNICATIONS", "FILES", "BINDINGS"]})["result"]
    assert all({"COMMUNICATIONS", "FILES", "BINDINGS"} <= set(r) for r in named)
    with_files = [r for r in _all(api, {"select": ["ID", "FILES"], "order": {"ID": "ASC"}}) if r["FILES"]]
    assert with_files, "the generator attaches files to some activities"
    file = with_files[0]["FILES"][0]
    assert isinstance(file["id"], int)
    assert f"ownerTypeId=6&ownerId={with_files[0]['ID']}" in file["url"] and file["url"].endswith("&auth=")
    only = api.ok("crm.activity.list", {"select": ["SUBJECT"]})["result"][0]
    assert set(only) == {"ID", "SUBJECT"}


def test_communications_shape(api: Caller) -> None:
    rows = api.ok("crm.activity.list", {"select": ["ID", "COMMUNICATIONS"], "filter": {"TYPE_ID": 2}})[
        "result"
    ]
    comm = rows[0]["COMMUNICATIONS"][0]
    assert set(comm) == {"ID", "TYPE", "VALUE", "ENTITY_ID", "ENTITY_TYPE_ID", "ENTITY_SETTINGS"}
    assert comm["TYPE"] == "PHONE" and all(
        isinstance(v, str) for k, v in comm.items() if k != "ENTITY_SETTINGS"
    )
    assert set(comm["ENTITY_SETTINGS"]) == {
        "HONORIFIC",
        "NAME",
        "SECOND_NAME",
        "LAST_NAME",
        "COMPANY_TITLE",
        "COMPANY_ID",
    }


def test_operators_match_a_python_oracle(api: Caller) -> None:
    store_rows = _store_rows(api.emu)

    def ids(params: dict[str, Any]) -> set[int]:
        rows = _all(api, {**params, "select": ["ID"]})
        return {int(r["ID"]) for r in rows}

    def oracle(pred: Any) -> set[int]:
        return {int(r["ID"]) for r in store_rows if pred(r)}

    assert ids({"filter": {"TYPE_ID": 2}}) == oracle(lambda r: r["TYPE_ID"] == "2")
    assert ids({"filter": {"=TYPE_ID": "2"}}) == oracle(lambda r: r["TYPE_ID"] == "2")
    assert ids({"filter": {"!TYPE_ID": 2}}) == oracle(lambda r: r["TYPE_ID"] != "2")
    assert ids({"filter": {"!=TYPE_ID": 2}}) == oracle(lambda r: r["TYPE_ID"] != "2")
    assert ids({"filter": {"@TYPE_ID": [1, 4]}}) == oracle(lambda r: r["TYPE_ID"] in ("1", "4"))
    assert ids({"filter": {"!@TYPE_ID": [1, 4]}}) == oracle(lambda r: r["TYPE_ID"] not in ("1", "4"))
    assert ids({"filter": {">ID": 990}}) == set(range(991, 1001))
    assert ids({"filter": {">=ID": 990, "<ID": 993}}) == {990, 991, 992}
    assert ids({"filter": {"<=ID": 3}}) == {1, 2, 3}
    assert ids({"filter": {"@ID": [5, 6, 999999]}}) == {5, 6}
    assert ids({"filter": {"ID": [5, 6]}}) == {5, 6}
    assert ids({"filter": {"@ID": [5, 6, 700], ">ID": 5}}) == {6, 700}
    assert ids({"filter": {"PROVIDER_ID": "CRM_TODO", "COMPLETED": "N"}}) == oracle(
        lambda r: r["PROVIDER_ID"] == "CRM_TODO" and r["COMPLETED"] == "N"
    )
    assert ids({"filter": {"%SUBJECT": "звонок"}}) == oracle(lambda r: "звонок" in r["SUBJECT"].casefold())
    assert ids({"filter": {"!%SUBJECT": "call"}}) == oracle(lambda r: "call" not in r["SUBJECT"].casefold())
    assert ids({"filter": {"=%SUBJECT": "Outgoing%"}}) == oracle(
        lambda r: r["SUBJECT"].startswith("Outgoing")
    )
    assert ids({"filter": {"%=SUBJECT": "%Johnson"}}) == oracle(lambda r: r["SUBJECT"].endswith("Johnson"))
    assert ids({"filter": {">RESULT_SUM": 1000}}) == oracle(
        lambda r: r["RESULT_SUM"] is not None and float(r["RESULT_SUM"]) > 1000
    )
    assert ids({"filter": {"RESULT_SUM": ""}}) == oracle(lambda r: r["RESULT_SUM"] is None)
    assert ids({"filter": {"OWNER_TYPE_ID": 128}}) == oracle(lambda r: r["OWNER_TYPE_ID"] == "128")


def test_datetime_filters_compare_instants_with_any_offset(api: Caller) -> None:
    store_rows = _store_rows(api.emu)
    pivot = sorted(parse_datetime(r["LAST_UPDATED"], TZ) or 0 for r in store_rows)[500]
    as_utc = dt.datetime.fromtimestamp(pivot, dt.UTC).isoformat()  # "+00:00"
    as_msk = dt.datetime.fromtimestamp(pivot, TZ).isoformat()
    as_z = as_utc.replace("+00:00", "Z")
    naive_portal = as_msk[:19]  # naive values are portal time
    expected_ge = {int(r["ID"]) for r in store_rows if parse_datetime(r["LAST_UPDATED"], TZ) >= pivot}  # type: ignore[operator]
    expected_gt = {int(r["ID"]) for r in store_rows if parse_datetime(r["LAST_UPDATED"], TZ) > pivot}  # type: ignore[operator]
    for value in (as_utc, as_msk, as_z, naive_portal):
        got = {int(r["ID"]) for r in _all(api, {"filter": {">=LAST_UPDATED": value}, "select": ["ID"]})}
        assert got == expected_ge, value
        got = {int(r["ID"]) for r in _all(api, {"filter": {">LAST_UPDATED": value}, "select": ["ID"]})}
        assert got == expected_gt, value
    exact = {int(r["ID"]) for r in _all(api, {"filter": {"LAST_UPDATED": as_utc}, "select": ["ID"]})}
    assert exact == expected_ge - expected_gt and exact


def test_incremental_export_boundaries(fresh: Caller) -> None:
    """Rows updated in the same second as the cursor: >= includes them, > does not."""
    emu = fresh.emu
    emu.store.touch(10, "2030-01-01T00:00:00+00:00")
    emu.store.touch(11, "2030-01-01T03:00:00+03:00")  # the same instant
    emu.store.touch(12, "2030-01-01T00:00:01+00:00")

    def ids(flt: dict[str, Any]) -> list[int]:
        return [int(r["ID"]) for r in _all(fresh, {"filter": flt, "order": {"ID": "ASC"}, "select": ["ID"]})]

    assert ids({">=LAST_UPDATED": "2030-01-01T00:00:00+00:00"}) == [10, 11, 12]
    assert ids({">LAST_UPDATED": "2030-01-01T00:00:00Z"}) == [12]
    assert ids(
        {">=LAST_UPDATED": "2030-01-01T00:00:00+00:00", "<LAST_UPDATED": "2030-01-01T03:00:01+03:00"}
    ) == [
        10,
        11,
    ]
    assert fresh.ok("crm.activity.get", {"id": 11})["result"]["LAST_UPDATED"] == "2030-01-01T03:00:00+03:00"


def test_bindings_filter_repeats_rows_per_matching_pair(fresh: Caller) -> None:
    store = fresh.emu.store
    new_id = store.add(
        {
            "OWNER_TYPE_ID": 1,
            "OWNER_ID": 77777,
            "TYPE_ID": 2,
            "SUBJECT": "bound twice",
            "BINDINGS": [{"OWNER_TYPE_ID": 1, "OWNER_ID": 77777}, {"OWNER_TYPE_ID": 2, "OWNER_ID": 88888}],
        }
    )
    one = fresh.ok("crm.activity.list", {"filter": {"BINDINGS": [{"OWNER_TYPE_ID": 2, "OWNER_ID": 88888}]}})
    assert [r["ID"] for r in one["result"]] == [str(new_id)]
    both = fresh.ok(
        "crm.activity.list",
        {
            "filter": {
                "BINDINGS": [{"OWNER_TYPE_ID": 1, "OWNER_ID": 77777}, {"OWNER_TYPE_ID": 2, "OWNER_ID": 88888}]
            }
        },
    )
    assert [r["ID"] for r in both["result"]] == [str(new_id), str(new_id)] and both["total"] == 2


def test_keyset_export_walks_everything_once(api: Caller) -> None:
    seen: list[int] = []
    last = 0
    while True:
        page = api.ok(
            "crm.activity.list",
            {"order": {"ID": "ASC"}, "filter": {">ID": last}, "start": -1, "select": ["ID"]},
        )["result"]
        seen.extend(int(r["ID"]) for r in page)
        if len(page) < 50:
            break
        last = int(page[-1]["ID"])
    assert seen == list(range(1, 1001))


def test_unknown_filter_field_is_ignored(api: Caller) -> None:
    body = api.ok("crm.activity.list", {"filter": {"NO_SUCH_FIELD": 1}, "start": -1})
    assert len(body["result"]) == 50
