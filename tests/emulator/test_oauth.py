"""The OAuth token server: refresh with rotation, error codes, stats about secrets in URLs."""

from __future__ import annotations

import time
from typing import Any

import requests

from airflow_provider_b24.testing import Bitrix24Emulator


def _form(emu: Bitrix24Emulator, refresh_token: str, **over: Any) -> dict[str, Any]:
    return {
        "grant_type": "refresh_token",
        "client_id": emu.client_id,
        "client_secret": emu.client_secret,
        "refresh_token": refresh_token,
        **over,
    }


def test_refresh_returns_documented_keys_and_rotates(bitrix24_emulator: Bitrix24Emulator) -> None:
    emu = bitrix24_emulator
    response = requests.post(
        emu.token_url, data=_form(emu, emu.refresh_token), verify=emu.ca_cert, timeout=10
    )
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {
        "access_token",
        "refresh_token",
        "expires",
        "expires_in",
        "client_endpoint",
        "server_endpoint",
        "domain",
        "member_id",
        "scope",
        "status",
        "user_id",
    }
    assert body["expires_in"] == 3600 and abs(body["expires"] - (time.time() + 3600)) < 5
    assert body["client_endpoint"] == emu.oauth_url and body["scope"] == "crm,user" and body["status"] == "L"
    assert body["refresh_token"] != emu.refresh_token and body["access_token"] != emu.access_token
    # the new access token works; the old refresh token is dead
    call = requests.post(
        emu.oauth_url + "profile", json={"auth": body["access_token"]}, verify=emu.ca_cert, timeout=10
    )
    assert call.status_code == 200
    again = requests.post(emu.token_url, data=_form(emu, emu.refresh_token), verify=emu.ca_cert, timeout=10)
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
    stats = emu.stats
    assert stats["token_refreshes"] == 1 and stats["token_requests"] == 2
    assert stats["oauth_secrets_in_query"] == 0


def test_get_with_query_is_counted_as_secrets_in_url(bitrix24_emulator: Bitrix24Emulator) -> None:
    emu = bitrix24_emulator
    response = requests.get(
        emu.token_url, params=_form(emu, emu.refresh_token), verify=emu.ca_cert, timeout=10
    )
    assert response.status_code == 200 and response.json()["access_token"]
    assert emu.stats["oauth_secrets_in_query"] == 1


def test_bad_client_and_missing_token(bitrix24_emulator: Bitrix24Emulator) -> None:
    emu = bitrix24_emulator
    bad = requests.post(
        emu.token_url,
        data=_form(emu, emu.refresh_token, client_secret="nope"),
        verify=emu.ca_cert,
        timeout=10,
    )
    assert bad.status_code == 401 and bad.json()["error"] == "invalid_client"
    missing = requests.post(emu.token_url, data=_form(emu, ""), verify=emu.ca_cert, timeout=10)
    assert missing.json() == {
        "error": "invalid_request",
        "error_description": 'No "refresh_token" parameter found',
    }
    grant = requests.post(
        emu.token_url,
        data=_form(emu, emu.refresh_token, grant_type="password"),
        verify=emu.ca_cert,
        timeout=10,
    )
    assert grant.json()["error"] == "invalid_request"


def test_revoke_refresh_tokens(bitrix24_emulator: Bitrix24Emulator) -> None:
    emu = bitrix24_emulator
    emu.revoke_refresh_tokens()
    response = requests.post(
        emu.token_url, data=_form(emu, emu.refresh_token), verify=emu.ca_cert, timeout=10
    )
    assert response.json()["error"] == "invalid_grant"
    _access, refresh = emu.issue_tokens()
    response = requests.post(emu.token_url, data=_form(emu, refresh), verify=emu.ca_cert, timeout=10)
    assert response.status_code == 200


def test_oauth_connection_tokens_work(bitrix24_emulator: Bitrix24Emulator) -> None:
    emu = bitrix24_emulator
    extra = emu.oauth_connection()["extra"]
    assert (
        extra["auth_type"] == "oauth"
        and extra["oauth_server"] == emu.base_url
        and extra["verify"] == emu.ca_cert
    )
    call = requests.post(
        emu.oauth_url + "crm.activity.get",
        json={"id": 1, "auth": extra["access_token"]},
        verify=emu.ca_cert,
        timeout=10,
    )
    assert call.json()["result"]["ID"] == "1"
    emu.expire_tokens()
    expired = requests.post(
        emu.oauth_url + "crm.activity.get",
        json={"id": 1, "auth": extra["access_token"]},
        verify=emu.ca_cert,
        timeout=10,
    )
    assert expired.status_code == 401 and expired.json()["error"] == "expired_token"
    fresh = requests.post(
        emu.token_url, data=_form(emu, extra["refresh_token"]), verify=emu.ca_cert, timeout=10
    )
    token = fresh.json()["access_token"]
    ok = requests.post(
        emu.oauth_url + "crm.activity.get", json={"id": 1, "auth": token}, verify=emu.ca_cert, timeout=10
    )
    assert ok.status_code == 200


def test_tokens_are_deterministic_per_seed(bitrix24_emulator_factory: Any) -> None:
    a = Bitrix24Emulator(activities=0, seed=5)
    b = Bitrix24Emulator(activities=0, seed=5)
    c = Bitrix24Emulator(activities=0, seed=6)
    assert a.access_token == b.access_token != c.access_token
    assert a.webhook_code == b.webhook_code != c.webhook_code
