"""Error answers exactly as documented: the ``crm.activity.*`` method pages, the OAuth errors and the
system errors (https://apidocs.bitrix24.com/error-codes.html)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests

from airflow_provider_b24.testing import NOT_FOUND, Bitrix24Emulator
from tests.emulator.conftest import Caller

SAMPLES = Path(__file__).resolve().parents[1] / "data"


def _err(response: requests.Response) -> tuple[int, str, str]:
    body = response.json()
    assert set(body) >= {"error", "error_description"}
    return response.status_code, body["error"], body["error_description"]


@pytest.mark.parametrize("method", ["crm.activity.get", "crm.activity.update", "crm.activity.delete"])
def test_missing_activity_is_legacy_not_found(fresh: Caller, method: str) -> None:
    params = {"id": 999999, "fields": {"SUBJECT": "x"}}
    assert _err(fresh.post(method, params)) == (400, "", NOT_FOUND)
    assert NOT_FOUND == "Not found"


@pytest.mark.parametrize("bad", [None, 0, -3, "abc", "", True])
def test_invalid_id(api: Caller, bad: object) -> None:
    params = {} if bad is None else {"id": bad}
    assert _err(api.post("crm.activity.get", params)) == (400, "", "ID is not defined or invalid.")


def test_hidden_activity_access_denied_matches_sample(fresh: Caller) -> None:
    fresh.emu.store.set_hidden(7)
    response = fresh.post("crm.activity.get", {"id": 7})
    assert response.status_code == 400
    assert response.json() == json.loads((SAMPLES / "crm.activity.get.400-access-denied.json").read_text())
    listed = fresh.ok("crm.activity.list", {"filter": {"@ID": [6, 7, 8]}, "select": ["ID"]})
    assert [r["ID"] for r in listed["result"]] == ["6", "8"] and listed["total"] == 2
    assert _err(fresh.post("crm.activity.delete", {"id": 7})) == (400, "", "Access denied")


def test_bad_webhook_code(api: Caller) -> None:
    url = api.emu.webhook_url.replace(api.emu.webhook_code, "wrongcode") + "crm.activity.get"
    assert _err(api.session.post(url, json={"id": 1})) == (
        401,
        "INVALID_CREDENTIALS",
        "Invalid request credentials",
    )
    url = api.emu.base_url + f"/rest/999/{api.emu.webhook_code}/crm.activity.get"
    assert _err(api.session.post(url, json={"id": 1}))[1] == "INVALID_CREDENTIALS"


def test_missing_auth(api: Caller) -> None:
    response = api.session.post(api.emu.oauth_url + "crm.activity.get", json={"id": 1})
    assert _err(response) == (401, "NO_AUTH_FOUND", "Wrong authorization data")


def test_garbage_token(api: Caller) -> None:
    status, code, _ = _err(api.oauth("crm.activity.get", {"id": 1}, "garbage"))
    assert (status, code) == (401, "invalid_token")


def test_expired_token(bitrix24_emulator_factory: object) -> None:
    emu: Bitrix24Emulator = bitrix24_emulator_factory(activities=5, access_token_lifetime=3600)  # type: ignore[operator]
    caller = Caller(emu)
    token = emu.access_token
    assert caller.oauth("crm.activity.get", {"id": 1}, token).status_code == 200
    emu.expire_tokens()
    assert _err(caller.oauth("crm.activity.get", {"id": 1}, token)) == (
        401,
        "expired_token",
        "The access token provided has expired.",
    )


def test_short_token_lifetime_expires_by_clock(bitrix24_emulator_factory: object) -> None:
    now = [1_800_000_000.0]
    emu: Bitrix24Emulator = bitrix24_emulator_factory(  # type: ignore[operator]
        activities=5, access_token_lifetime=2, clock=lambda: now[0]
    )
    caller = Caller(emu)
    assert caller.oauth("profile", {}, emu.access_token).status_code == 200
    now[0] += 2.5
    assert _err(caller.oauth("profile", {}, emu.access_token))[1] == "expired_token"


def test_wrong_scope(bitrix24_emulator_factory: object) -> None:
    emu: Bitrix24Emulator = bitrix24_emulator_factory(activities=5, scopes=("user",))  # type: ignore[operator]
    caller = Caller(emu)
    status, code, _ = _err(caller.post("crm.activity.get", {"id": 1}))
    assert (status, code) == (401, "insufficient_scope")
    assert caller.ok("profile")["result"]["ID"] == "1"
    batch = caller.ok("batch", {"cmd": {"a": "crm.activity.get?id=1"}})["result"]
    assert batch["result_error"]["a"]["error"] == "insufficient_scope"


def test_unknown_method(api: Caller) -> None:
    assert _err(api.post("crm.activity.nosuch")) == (404, "ERROR_METHOD_NOT_FOUND", "Method not found!")


def test_plain_http_when_tls_enforced(shared_emu: Bitrix24Emulator) -> None:
    url = shared_emu.webhook_url.replace("https://", "http://") + "crm.activity.get"
    response = requests.post(url, json={"id": 1}, timeout=10)
    assert _err(response) == (400, "INVALID_REQUEST", "Https required")


def test_no_tls_mode_serves_plain_http(bitrix24_emulator_factory: object) -> None:
    emu: Bitrix24Emulator = bitrix24_emulator_factory(activities=5, tls=False)  # type: ignore[operator]
    assert emu.base_url.startswith("http://") and emu.ca_cert is None
    assert "verify" not in emu.connection()["extra"]
    response = requests.post(emu.webhook_url + "crm.activity.get", json={"id": 1}, timeout=10)
    assert response.status_code == 200
    strict: Bitrix24Emulator = bitrix24_emulator_factory(activities=5, tls=False, enforce_https=True)  # type: ignore[operator]
    response = requests.post(strict.webhook_url + "crm.activity.get", json={"id": 1}, timeout=10)
    assert _err(response)[1] == "INVALID_REQUEST"


def test_list_rejects_non_array_filter(api: Caller) -> None:
    assert _err(api.post("crm.activity.list", {"filter": "ID=1"})) == (
        400,
        "",
        "Parameter 'filter' must be array.",
    )
    assert _err(api.post("crm.activity.list", {"order": "ID"})) == (
        400,
        "",
        "Parameter 'order' must be array.",
    )


def test_add_validation_messages(fresh: Caller) -> None:
    good = {
        "OWNER_TYPE_ID": 2,
        "OWNER_ID": 10,
        "TYPE_ID": 2,
        "SUBJECT": "Call",
        "RESPONSIBLE_ID": 1,
        "COMMUNICATIONS": [{"VALUE": "+79990001122", "TYPE": "PHONE", "ENTITY_TYPE_ID": 3, "ENTITY_ID": 5}],
    }
    cases = {
        "SUBJECT": "The field SUBJECT is not defined or empty",
        "RESPONSIBLE_ID": "The field RESPONSIBLE_ID is not defined or invalid",
        "TYPE_ID": "The field TYPE_ID is not defined or invalid",
        "COMMUNICATIONS": "The field COMMUNICATIONS is not defined or invalid",
        "OWNER_ID": "Could not build binding. Please ensure that owner info and communications are defined"
        " correctly",
    }
    for missing, message in cases.items():
        fields = {k: v for k, v in good.items() if k != missing}
        assert _err(fresh.post("crm.activity.add", {"fields": fields})) == (400, "", message)
    task = {**good, "TYPE_ID": 3}
    assert (
        _err(fresh.post("crm.activity.add", {"fields": task}))[2]
        == "The field TYPE_ID is not defined or invalid"
    )


def test_not_found_text_is_configurable(bitrix24_emulator_factory: object) -> None:
    emu: Bitrix24Emulator = bitrix24_emulator_factory(  # type: ignore[operator]
        activities=3, not_found_message="Activity is not found"
    )
    assert _err(Caller(emu).post("crm.activity.get", {"id": 99})) == (400, "", "Activity is not found")
