"""batch: PHP-encoded commands, split into ≤ 50 per request in order, per-command errors kept apart."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests_mock as rm

from airflow_provider_b24.client import ResultRef
from airflow_provider_b24.exceptions import (
    Bitrix24AccessDenied,
    Bitrix24BadRequest,
    Bitrix24ConfigError,
    Bitrix24NotFound,
)
from tests.unit.client.b24_client_helpers import BASE, ok


def echo_batch(request: Any, context: Any) -> Any:
    cmd = json.loads(request.body)["cmd"]
    return {"result": {"result": {k: v for k, v in cmd.items()}, "result_error": [], "result_total": []}}


def test_split_into_chunks_of_50_in_order(client) -> None:
    commands = {f"c{i}": ("crm.activity.get", {"id": i}) for i in range(1, 121)}
    with rm.Mocker() as mock:
        route = mock.post(BASE + "batch", json=echo_batch)
        result = client.batch(commands)
    assert route.call_count == 3
    sizes = [len(json.loads(r.body)["cmd"]) for r in route.request_history]
    assert sizes == [50, 50, 20]
    assert list(result.results) == list(commands)
    assert result.results["c7"] == "crm.activity.get?id=7"
    assert result.requests == 3
    assert result.ok


def test_partial_errors_keep_successes(client) -> None:
    answer = {
        "result": {
            "result": {"a": {"ID": "1"}, "c": {"ID": "3"}},
            "result_error": {
                "b": {"error": "", "error_description": "Not found"},
                "d": {"error": "", "error_description": "Access denied."},
                "e": {
                    "error": "ERROR_BATCH_METHOD_NOT_ALLOWED",
                    "error_description": "Method is not allowed",
                },
            },
            "result_total": [],
            "result_next": [],
            "result_time": {"a": {"duration": 0.1}},
        },
        "time": {"operating": 0.5},
    }
    with rm.Mocker() as mock:
        mock.post(BASE + "batch", json=answer)
        result = client.batch({k: ("crm.activity.get", {"id": i}) for i, k in enumerate("abcde")})
    assert result.results == {"a": {"ID": "1"}, "c": {"ID": "3"}}
    assert isinstance(result.errors["b"], Bitrix24NotFound)
    assert isinstance(result.errors["d"], Bitrix24AccessDenied)
    assert isinstance(result.errors["e"], Bitrix24BadRequest)
    assert result.errors["b"].method == "crm.activity.get"
    assert result.times == {"a": {"duration": 0.1}}
    assert not result.ok
    with pytest.raises(Bitrix24NotFound):
        result.raise_first_error()


def test_totals_and_next(client) -> None:
    answer = {
        "result": {
            "result": {"l": [{"ID": "1"}]},
            "result_error": [],
            "result_total": {"l": 120},
            "result_next": {"l": 50},
        }
    }
    with rm.Mocker() as mock:
        mock.post(BASE + "batch", json=answer)
        result = client.batch({"l": ("crm.activity.list", {"start": 0})})
    assert result.totals == {"l": 120}
    assert result.next == {"l": 50}


def test_numeric_keys_arrive_as_lists(client) -> None:
    answer = {"result": {"result": [{"ID": "1"}, {"ID": "2"}], "result_error": []}}
    with rm.Mocker() as mock:
        mock.post(BASE + "batch", json=answer)
        result = client.batch({"0": ("crm.activity.get", {"id": 1}), "1": ("crm.activity.get", {"id": 2})})
    assert result.results == {"0": {"ID": "1"}, "1": {"ID": "2"}}


def test_halt_stops_later_chunks(client) -> None:
    failing = {
        "result": {"result": [], "result_error": {"c0": {"error": "", "error_description": "Not found"}}}
    }
    with rm.Mocker() as mock:
        route = mock.post(BASE + "batch", json=failing)
        result = client.batch({f"c{i}": ("crm.activity.get", {"id": i}) for i in range(80)}, halt=True)
    assert route.call_count == 1
    assert json.loads(route.last_request.body)["halt"] == 1
    assert list(result.errors) == ["c0"]


def test_commands_are_php_encoded(client) -> None:
    with rm.Mocker() as mock:
        route = mock.post(BASE + "batch", json=echo_batch)
        client.batch(
            {
                "a": (
                    "crm.activity.list",
                    {
                        "filter": {
                            ">=CREATED": "2024-01-01T00:00:00+03:00",
                            "COMPLETED": False,
                            "OWNER_ID": None,
                        },
                        "select": ["ID", "SUBJECT"],
                        "start": -1,
                    },
                ),
                "b": ("crm.activity.get", {"id": ResultRef("a", 0, "ID")}),
                "c": "crm.activity.get?id=5",
            }
        )
    cmd = json.loads(route.last_request.body)["cmd"]
    assert cmd["a"] == (
        "crm.activity.list?filter[%3E%3DCREATED]=2024-01-01T00%3A00%3A00%2B03%3A00"
        "&filter[COMPLETED]=N&filter[OWNER_ID]=&select[0]=ID&select[1]=SUBJECT&start=-1"
    )
    assert cmd["b"] == "crm.activity.get?id=$result[a][0][ID]"
    assert cmd["c"] == "crm.activity.get?id=5"
    assert "None" not in cmd["a"]


def test_empty_batch_sends_nothing(client) -> None:
    with rm.Mocker() as mock:
        route = mock.post(BASE + "batch", json=echo_batch)
        result = client.batch({})
    assert route.call_count == 0
    assert result.results == {} and result.requests == 0


@pytest.mark.parametrize(
    "commands",
    [
        {"a b": ("profile", None)},
        {"a": ("batch", {})},
        {"a": 5},
        {"a": ("crm.activity.get", [1, 2])},
    ],
)
def test_bad_commands_are_refused_before_sending(client, commands) -> None:
    with pytest.raises(Bitrix24ConfigError):
        client.batch(commands)


def test_reference_across_chunks_is_refused(client) -> None:
    commands: dict[str, Any] = {f"c{i}": ("crm.activity.get", {"id": i}) for i in range(50)}
    commands["late"] = ("crm.activity.get", {"id": ResultRef("c0", "ID")})
    with pytest.raises(Bitrix24ConfigError, match=r"\$result\[c0\]"):
        client.batch(commands)


def test_whole_batch_error_raises(client) -> None:
    from airflow_provider_b24.exceptions import Bitrix24AuthError

    with rm.Mocker() as mock:
        mock.post(
            BASE + "batch", status_code=401, json={"error": "NO_AUTH_FOUND", "error_description": "Wrong"}
        )
        with pytest.raises(Bitrix24AuthError):
            client.batch({"a": ("profile", None)})


def test_batch_top_level_operating_is_tracked(client) -> None:
    answer = ok({"result": {"a": 1}, "result_error": []})
    answer["json"]["time"] = {"operating": 12.5, "operating_reset_at": 1}
    with rm.Mocker() as mock:
        mock.post(BASE + "batch", **answer)
        client.batch({"a": ("profile", None)})
    assert client._operating._usage["batch"].operating == 12.5
