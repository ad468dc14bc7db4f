"""The success envelope and activity payloads match the documented sample byte-for-shape."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.emulator.conftest import Caller

SAMPLES = Path(__file__).resolve().parents[1] / "data"
ISO = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}[+-]\d{2}:\d{2}$")


def _sample() -> dict:
    return json.loads((SAMPLES / "crm.activity.get.200.json").read_text())


def test_get_has_exactly_the_documented_keys_in_order(api: Caller) -> None:
    body = api.ok("crm.activity.get", {"id": 1})
    assert list(body) == ["result", "time"]
    assert list(body["result"]) == list(_sample()["result"])


def test_get_wire_types_match_the_sample(api: Caller) -> None:
    sample = _sample()["result"]
    for activity_id in range(1, 60):
        row = api.ok("crm.activity.get", {"id": activity_id})["result"]
        for key, value in row.items():
            if key in ("SETTINGS", "PROVIDER_PARAMS"):
                assert value == [] or (isinstance(value, dict) and value), (key, value)
            elif value is not None:
                assert isinstance(value, str), (key, value)
            if isinstance(sample[key], str) and key not in ("DESCRIPTION", "LOCATION"):
                assert value is not None or key in ("RESULT_SUM",), (key, row)
        for key in ("CREATED", "LAST_UPDATED", "START_TIME", "END_TIME", "DEADLINE"):
            assert ISO.match(row[key]) and row[key].endswith("+03:00"), row[key]


def test_time_block_keys(api: Caller) -> None:
    time_block = api.ok("crm.activity.get", {"id": 1})["time"]
    assert set(time_block) == set(_sample()["time"])
    assert isinstance(time_block["start"], float) and isinstance(time_block["operating_reset_at"], int)
    assert time_block["finish"] >= time_block["start"]
    assert ISO.match(time_block["date_start"])


def test_list_envelope_total_next_and_last_page(api: Caller) -> None:
    first = api.ok("crm.activity.list", {"order": {"ID": "ASC"}})
    assert list(first) == ["result", "next", "total", "time"]
    assert first["total"] == 1000 and first["next"] == 50 and len(first["result"]) == 50
    last = api.ok("crm.activity.list", {"order": {"ID": "ASC"}, "start": 950})
    assert "next" not in last and last["total"] == 1000 and len(last["result"]) == 50
    assert last["result"][-1]["ID"] == "1000"


def test_start_minus_one_skips_count(api: Caller) -> None:
    body = api.ok("crm.activity.list", {"order": {"ID": "ASC"}, "start": -1, "filter": {">ID": 10}})
    assert body["total"] == 0 and "next" not in body
    assert [r["ID"] for r in body["result"]][:2] == ["11", "12"] and len(body["result"]) == 50


def test_empty_list_is_an_empty_array(api: Caller) -> None:
    body = api.ok("crm.activity.list", {"filter": {"ID": 999999}})
    assert body["result"] == [] and body["total"] == 0 and "next" not in body


def test_json_is_utf8_cyrillic_roundtrip(api: Caller) -> None:
    subjects = [r["SUBJECT"] for r in api.ok("crm.activity.list", {"select": ["SUBJECT"]})["result"]]
    subjects += [
        r["SUBJECT"] for r in api.ok("crm.activity.list", {"select": ["SUBJECT"], "start": 50})["result"]
    ]
    assert any(re.search("[\u0400-\u04ff]", s) for s in subjects)
