"""Scripted faults: "the next K requests to method M fail like X"."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import requests

from airflow_provider_b24.testing import Bitrix24Emulator
from tests.emulator.conftest import Caller


@pytest.fixture
def caller(fresh: Caller) -> Caller:
    return fresh


def test_next_k_requests_to_one_method(caller: Caller) -> None:
    caller.emu.faults.add("http_500_json", method="CRM.Activity.Get", times=2)
    assert caller.post("crm.activity.list", {}).status_code == 200  # other methods untouched
    first = caller.post("crm.activity.get", {"id": 1})
    assert first.status_code == 500
    assert first.json() == {"error": "INTERNAL_SERVER_ERROR", "error_description": "Internal server error"}
    assert caller.post("crm.activity.Get", {"id": 1}).status_code == 500
    assert caller.post("crm.activity.get", {"id": 1}).status_code == 200
    assert caller.emu.stats["faults_injected"] == 2 and len(caller.emu.faults) == 0


@pytest.mark.parametrize(
    ("kind", "status"), [("http_500_html", 500), ("http_502_html", 502), ("http_504_html", 504)]
)
def test_html_error_pages(caller: Caller, kind: str, status: int) -> None:
    caller.emu.faults.add(kind)
    response = caller.post("profile")
    assert response.status_code == status and response.headers["Content-Type"].startswith("text/html")
    with pytest.raises(ValueError):
        response.json()


def test_malformed_and_truncated_json(caller: Caller) -> None:
    caller.emu.faults.add("malformed_json", method="crm.activity.get")
    caller.emu.faults.add("truncated_json", method="crm.activity.get")
    for _ in range(2):
        response = caller.post("crm.activity.get", {"id": 1})
        assert response.status_code == 200
        with pytest.raises(json.JSONDecodeError):
            json.loads(response.text)
    assert caller.post("crm.activity.get", {"id": 1}).json()["result"]["ID"] == "1"


def test_connection_reset_mid_response(caller: Caller) -> None:
    caller.emu.faults.add("connection_reset", method="crm.activity.list")
    broken = (requests.exceptions.ConnectionError, requests.exceptions.ChunkedEncodingError)
    with pytest.raises(broken):
        caller.post("crm.activity.list", {})
    assert caller.post("crm.activity.list", {}).status_code == 200  # a new connection works


def test_slow_response_past_client_timeout(caller: Caller) -> None:
    caller.emu.faults.add("slow", method="profile", seconds=1.0)
    started = time.perf_counter()
    with pytest.raises(requests.exceptions.ReadTimeout):
        caller.session.post(caller.emu.webhook_url + "profile", json={}, timeout=0.2)
    assert time.perf_counter() - started < 0.9
    assert caller.post("profile").status_code == 200


def test_redirect_to_other_loopback_name(caller: Caller) -> None:
    caller.emu.faults.add("redirect", method="crm.activity.get")
    response = caller.post("crm.activity.get", {"id": 1}, allow_redirects=False)
    assert response.status_code == 302
    assert response.headers["Location"].startswith(caller.emu.base_url.replace("127.0.0.1", "localhost"))
    assert response.headers["Location"].endswith("/crm.activity.get")


def test_redirect_to_another_emulator(caller: Caller, bitrix24_emulator_factory: Any) -> None:
    other: Bitrix24Emulator = bitrix24_emulator_factory(
        activities=5, seed=3, webhook_code=caller.emu.webhook_code
    )
    caller.emu.faults.add("redirect", method="crm.activity.get", base_url=other.base_url)
    response = caller.post("crm.activity.get", {"id": 1})  # requests turns 302 POST into GET
    assert response.history[0].status_code == 302 and response.url.startswith(other.base_url)
    assert other.stats["requests"] == 1


@pytest.mark.parametrize(
    ("kind", "status", "code"),
    [
        ("query_limit", 503, "QUERY_LIMIT_EXCEEDED"),
        ("overload", 503, "OVERLOAD_LIMIT"),
        ("expired_token", 401, "expired_token"),
        ("invalid_token", 401, "invalid_token"),
    ],
)
def test_system_errors(caller: Caller, kind: str, status: int, code: str) -> None:
    caller.emu.faults.add(kind, method="crm.activity.list")
    response = caller.post("crm.activity.list", {})
    assert (response.status_code, response.json()["error"]) == (status, code)


def test_operation_time_limit_fault_has_reset_time(caller: Caller) -> None:
    caller.emu.faults.add("operation_time_limit", reset_in=5)
    response = caller.post("crm.activity.list", {})
    assert response.status_code == 429
    reset_at = response.json()["time"]["operating_reset_at"]
    assert abs(reset_at - (time.time() + 5)) <= 2


def test_custom_error(caller: Caller) -> None:
    caller.emu.faults.add(
        "error",
        status=403,
        error="ACCESS_DENIED",
        error_description="REST is available only on commercial plans.",
    )
    response = caller.post("profile")
    assert response.status_code == 403 and response.json()["error"] == "ACCESS_DENIED"


def test_batch_matches_batch_requests_and_command_errors(caller: Caller) -> None:
    caller.emu.faults.add("http_502_html", method="batch")
    assert caller.post("batch", {"cmd": {"a": "profile"}}).status_code == 502
    caller.emu.faults.add(
        "batch_command_error", method="crm.activity.get", times=2, error_description="Access denied."
    )
    cmd = {f"c{i}": f"crm.activity.get?id={i + 1}" for i in range(4)}
    result = caller.ok("batch", {"cmd": cmd})["result"]
    assert list(result["result_error"]) == ["c0", "c1"] and list(result["result"]) == ["c2", "c3"]
    assert result["result_error"]["c0"] == {"error": "", "error_description": "Access denied."}


def test_unlimited_and_probabilistic_faults_are_deterministic(bitrix24_emulator_factory: Any) -> None:
    patterns = []
    for _ in range(2):
        caller = Caller(bitrix24_emulator_factory(activities=5, seed=9))
        caller.emu.faults.add("query_limit", times=None, probability=0.3)
        patterns.append([caller.post("profile").status_code for _ in range(30)])
        caller.emu.faults.clear()
        assert caller.post("profile").status_code == 200
    assert patterns[0] == patterns[1] and 503 in patterns[0] and 200 in patterns[0]


def test_token_endpoint_faults(caller: Caller) -> None:
    emu = caller.emu
    emu.faults.add("http_500_json")  # None matches REST calls only...
    emu.faults.add("http_504_html", method="oauth.token")
    form = {
        "grant_type": "refresh_token",
        "client_id": emu.client_id,
        "client_secret": emu.client_secret,
        "refresh_token": emu.refresh_token,
    }
    assert caller.session.post(emu.token_url, data=form).status_code == 504
    assert caller.session.post(emu.token_url, data=form).status_code == 200
    assert caller.post("profile").status_code == 500
