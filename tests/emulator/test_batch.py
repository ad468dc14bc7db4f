"""batch: ≤50 commands, halt, $result references (raw and percent-encoded), sections, one request."""

from __future__ import annotations

from airflow_provider_b24.testing.phpquery import build_query
from tests.emulator.conftest import Caller


def test_sections_and_mixed_errors(api: Caller) -> None:
    body = api.ok(
        "batch",
        {
            "halt": 0,
            "cmd": {
                "one": "crm.activity.get?id=1",
                "missing": "crm.activity.get?id=999999",
                "page": "crm.activity.list?" + build_query({"filter": {">ID": 10}, "order": {"ID": "ASC"}}),
            },
        },
    )
    result = body["result"]
    assert set(result) == {"result", "result_error", "result_total", "result_next", "result_time"}
    assert result["result"]["one"]["ID"] == "1"
    assert result["result_error"] == {"missing": {"error": "", "error_description": "Not found"}}
    assert result["result_total"] == {"page": 990} and result["result_next"] == {"page": 50}
    assert set(result["result_time"]) == {"one", "missing", "page"}
    assert set(result["result_time"]["one"]) == {
        "start",
        "finish",
        "duration",
        "processing",
        "date_start",
        "date_finish",
    }
    assert "time" in body


def test_empty_sections_are_arrays(api: Caller) -> None:
    result = api.ok("batch", {"cmd": {"a": "crm.activity.get?id=1"}})["result"]
    assert result["result_error"] == [] and result["result_total"] == [] and result["result_next"] == []
    assert api.ok("batch", {"cmd": {}})["result"]["result"] == []


def test_list_cmd_gives_list_sections(api: Caller) -> None:
    result = api.ok("batch", {"cmd": ["crm.activity.get?id=1", "crm.activity.get?id=2"]})["result"]
    assert [r["ID"] for r in result["result"]] == ["1", "2"]


def test_halt_stops_at_first_error(api: Caller) -> None:
    cmd = {"a": "crm.activity.get?id=1", "b": "crm.activity.get?id=0", "c": "crm.activity.get?id=3"}
    halted = api.ok("batch", {"halt": 1, "cmd": cmd})["result"]
    assert list(halted["result"]) == ["a"] and list(halted["result_error"]) == ["b"]
    assert halted["result_error"]["b"]["error_description"] == "ID is not defined or invalid."
    go_on = api.ok("batch", {"halt": False, "cmd": cmd})["result"]
    assert list(go_on["result"]) == ["a", "c"]


def test_result_references_raw_and_percent_encoded(api: Caller) -> None:
    first = "crm.activity.list?" + build_query(
        {"order": {"ID": "ASC"}, "filter": {">ID": 0}, "start": -1, "select": ["ID"]}
    )
    raw = "crm.activity.list?order[ID]=ASC&filter[>ID]=$result[p0][49][ID]&start=-1&select[]=ID"
    encoded = "crm.activity.list?" + build_query(
        {"order": {"ID": "ASC"}, "filter": {">ID": "$result[p1][49][ID]"}, "start": -1, "select": ["ID"]}
    )
    assert "%24result%5Bp1%5D%5B49%5D%5BID%5D" in encoded
    result = api.ok("batch", {"halt": 1, "cmd": {"p0": first, "p1": raw, "p2": encoded}})["result"]
    ids = [int(r["ID"]) for key in ("p0", "p1", "p2") for r in result["result"][key]]
    assert ids == list(range(1, 151))


def test_whole_value_reference_substitutes_arrays(api: Caller) -> None:
    cmd = {
        "page": "crm.activity.list?filter[@ID][]=4&filter[@ID][]=2&select[]=ID&order[ID]=ASC",
        "get": "crm.activity.get?id=$result[page][1][ID]",
        "missing": "crm.activity.get?id=$result[page][77][ID]",
    }
    result = api.ok("batch", {"cmd": cmd})["result"]
    assert result["result"]["get"]["ID"] == "4"
    assert result["result_error"]["missing"]["error_description"] == "ID is not defined or invalid."


def test_batch_length_limit(api: Caller) -> None:
    cmd = {f"c{i}": f"crm.activity.get?id={i + 1}" for i in range(51)}
    response = api.post("batch", {"cmd": cmd})
    assert response.status_code == 400
    assert response.json() == {
        "error": "ERROR_BATCH_LENGTH_EXCEEDED",
        "error_description": "Max batch length exceeded",
    }
    fifty = {f"c{i}": f"crm.activity.get?id={i + 1}" for i in range(50)}
    assert len(api.ok("batch", {"cmd": fifty})["result"]["result"]) == 50


def test_nested_batch_refused_per_command(api: Caller) -> None:
    result = api.ok("batch", {"cmd": {"x": "batch?cmd[a]=profile", "y": "nosuch.method"}})["result"]
    assert result["result_error"]["x"]["error"] == "ERROR_BATCH_METHOD_NOT_ALLOWED"
    assert result["result_error"]["y"]["error"] == "ERROR_METHOD_NOT_FOUND"


def test_batch_counts_as_one_request(fresh: Caller) -> None:
    fresh.emu.stats_reset()
    cmd = {f"c{i}": f"crm.activity.get?id={i + 1}" for i in range(50)}
    fresh.ok("batch", {"cmd": cmd})
    stats = fresh.emu.stats
    assert stats["requests"] == 1 and stats["batch_requests"] == 1 and stats["batch_commands"] == 50
    assert stats["batch_methods"] == {"crm.activity.get": 50} and stats["methods"] == {"batch": 1}


def test_batch_as_form_body(api: Caller) -> None:
    form = build_query(
        {"halt": 0, "cmd": {"a": "crm.activity.get?id=5", "b": "crm.activity.list?filter[ID]=6"}}
    )
    response = api.session.post(
        api.emu.webhook_url + "batch",
        data=form,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    result = response.json()["result"]
    assert result["result"]["a"]["ID"] == "5" and result["result"]["b"][0]["ID"] == "6"


def test_oauth_batch_with_auth_in_body(api: Caller) -> None:
    response = api.oauth("batch", {"cmd": {"a": "crm.activity.get?id=5"}}, api.emu.access_token)
    assert response.json()["result"]["result"]["a"]["ID"] == "5"
