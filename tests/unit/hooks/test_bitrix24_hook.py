"""Bitrix24Hook: connection -> client, secrets masking, token Variable, test_connection, activity methods."""

from __future__ import annotations

import dataclasses
import json
import logging
from typing import Any
from unittest import mock

import pytest
import requests_mock as rm

from airflow_provider_b24.client import Bitrix24Client, OAuthAuth, TokenPair
from airflow_provider_b24.exceptions import Bitrix24ConfigError, Bitrix24NotFound
from airflow_provider_b24.hooks.bitrix24 import Bitrix24Hook
from airflow_provider_b24.hooks.token_store import AirflowVariableTokenStore, variable_name

CODE = "hookWebhookC0de"
PORTAL = "https://hook.example.com"
BASE = f"{PORTAL}/rest/7/{CODE}/"
OAUTH_EXTRA = {
    "auth_type": "oauth",
    "client_id": "local.app",
    "client_secret": "hookClientSecret",
    "access_token": "seedAccessToken",
    "refresh_token": "seedRefreshToken",
    "oauth_server": "https://oauth.example.com",
}


def set_conn(monkeypatch: pytest.MonkeyPatch, conn_id: str = "b24", **fields: Any) -> None:
    body = {"conn_type": "bitrix24", **fields}
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(body))


@pytest.fixture
def webhook(monkeypatch: pytest.MonkeyPatch) -> Bitrix24Hook:
    set_conn(monkeypatch, host="hook.example.com", login="7", password=CODE)
    return Bitrix24Hook(bitrix24_conn_id="b24")


def test_class_attributes() -> None:
    assert Bitrix24Hook.conn_name_attr == "bitrix24_conn_id"
    assert Bitrix24Hook.default_conn_name == "bitrix24_default"
    assert Bitrix24Hook.conn_type == "bitrix24"
    assert Bitrix24Hook.hook_name == "Bitrix24"
    assert Bitrix24Hook().bitrix24_conn_id == "bitrix24_default"
    assert callable(Bitrix24Hook.get_ui_field_behaviour)
    assert "hidden_fields" in Bitrix24Hook.get_ui_field_behaviour()


def test_no_io_in_init() -> None:
    with mock.patch.object(Bitrix24Hook, "get_connection", side_effect=AssertionError("I/O in __init__")):
        Bitrix24Hook(bitrix24_conn_id="missing")


def test_get_conn_builds_one_webhook_client(webhook: Bitrix24Hook) -> None:
    client = webhook.get_conn()
    assert isinstance(client, Bitrix24Client)
    assert client.base_url == PORTAL
    assert webhook.get_conn() is client
    assert CODE not in repr(client) and CODE not in repr(webhook)


def test_call_batch_iter_list(webhook: Bitrix24Hook) -> None:
    with rm.Mocker() as m:
        m.post(BASE + "crm.activity.get", json={"result": {"ID": "1"}})
        m.post(BASE + "batch", json={"result": {"result": {"a": {"ID": "1"}}, "result_error": []}})
        m.post(BASE + "crm.activity.list", json={"result": [{"ID": "1"}, {"ID": "2"}], "total": 0})
        assert webhook.call("crm.activity.get", {"id": 1}) == {"ID": "1"}
        assert webhook.batch({"a": ("crm.activity.get", {"id": 1})}).results == {"a": {"ID": "1"}}
        assert [r["ID"] for r in webhook.iter_list("crm.activity.list", {"select": ["ID"]})] == ["1", "2"]


def test_webhook_url_extra_and_uri_form(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_B24URL",
        "bitrix24://?webhook_url=" + f"https%3A%2F%2Fhook.example.com%2Frest%2F7%2F{CODE}%2F",
    )
    hook = Bitrix24Hook(bitrix24_conn_id="b24url")
    with rm.Mocker() as m:
        route = m.post(BASE + "profile", json={"result": {"ID": "7"}})
        hook.call("profile")
    assert route.call_count == 1


def test_secrets_are_registered_with_the_masker(webhook: Bitrix24Hook) -> None:
    with mock.patch("airflow.sdk.log.mask_secret") as masker:
        webhook.get_conn()
    assert CODE in [c.args[0] for c in masker.call_args_list]


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({"host": "", "login": "7", "password": CODE}, "host is empty"),
        ({"host": f"{PORTAL}/rest/7/{CODE}/", "login": "7", "password": CODE}, "without a path"),
        ({"host": PORTAL, "login": "seven", "password": CODE}, "login"),
        ({"host": PORTAL, "extra": {"webhook_url": f"{PORTAL}/rest/x/{CODE}"}}, "positive integer"),
        ({"host": PORTAL, "extra": {"auth_type": "oauht"}}, "oauht"),
        ({"host": PORTAL, "extra": {**OAUTH_EXTRA, "client_secret": ""}}, "client_secret"),
        (
            {"host": PORTAL, "extra": {**OAUTH_EXTRA, "access_token": "", "refresh_token": ""}},
            "refresh_token",
        ),
    ],
)
def test_bad_connections_fail_before_any_request(monkeypatch, fields, needle) -> None:
    set_conn(monkeypatch, "bad", **fields)
    hook = Bitrix24Hook(bitrix24_conn_id="bad")
    with rm.Mocker() as m:
        with pytest.raises(Bitrix24ConfigError, match=needle) as info:
            hook.get_conn()
        assert m.call_count == 0
    assert CODE not in str(info.value)
    ok, reason = Bitrix24Hook(bitrix24_conn_id="bad").test_connection()
    assert ok is False
    assert needle in reason
    assert CODE not in reason


# ---------------------------------------------------------------- test_connection
def test_test_connection_success(webhook: Bitrix24Hook) -> None:
    with rm.Mocker() as m:
        route = m.post(BASE + "profile", json={"result": {"ID": "7", "NAME": "Ann"}})
        ok, message = webhook.test_connection()
    assert ok is True
    assert "hook.example.com" in message
    assert route.call_count == 1
    assert CODE not in message


def test_test_connection_bad_credentials(webhook: Bitrix24Hook) -> None:
    with rm.Mocker() as m:
        m.post(
            BASE + "profile",
            status_code=401,
            json={"error": "INVALID_CREDENTIALS", "error_description": "Invalid request credentials"},
        )
        ok, reason = webhook.test_connection()
    assert ok is False
    assert "INVALID_CREDENTIALS: Invalid request credentials" in reason
    assert CODE not in reason


def test_test_connection_never_raises(webhook: Bitrix24Hook) -> None:
    with mock.patch.object(Bitrix24Hook, "get_settings", side_effect=RuntimeError(f"boom {CODE}")):
        ok, reason = webhook.test_connection()
    assert ok is False
    assert "RuntimeError" in reason


def test_test_connection_oauth_uses_app_info(monkeypatch: pytest.MonkeyPatch) -> None:
    set_conn(monkeypatch, "oa", host=PORTAL, extra=OAUTH_EXTRA)
    hook = Bitrix24Hook(bitrix24_conn_id="oa")
    with rm.Mocker() as m:
        route = m.post(f"{PORTAL}/rest/app.info", json={"result": {"ID": "3", "CODE": "local.app"}})
        ok, message = hook.test_connection()
    assert ok is True, message
    assert json.loads(route.last_request.body)["auth"] == "seedAccessToken"


def test_test_connection_keeps_the_connections_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """The Test button's client is the connection's own config with only the waiting shortened."""
    extra = {"operating_budget": 300, "rate_limit": 5, "burst": 100, "verify": "false", "timeout": 20}
    set_conn(monkeypatch, host="hook.example.com", login="7", password=CODE, extra=extra)
    hook = Bitrix24Hook(bitrix24_conn_id="b24")
    used: list[Any] = []
    real_client = Bitrix24Client

    def recording_client(*args: Any, **kwargs: Any) -> Bitrix24Client:
        used.append(args[2])
        return real_client(*args, **kwargs)

    with rm.Mocker() as m, mock.patch("airflow_provider_b24.hooks.bitrix24.Bitrix24Client", recording_client):
        m.post(BASE + "profile", json={"result": {"ID": "7"}})
        ok, message = hook.test_connection()
    assert ok is True, message
    (config,) = used
    connection = hook.get_settings().config
    assert (config.operating_budget, config.rate_limit, config.burst, config.verify) == (300, 5, 100, False)
    assert config == dataclasses.replace(
        connection, max_retries=1, operating_max_wait=0.0, backoff_base=0.5, backoff_max=1.0
    )
    assert (config.timeout, config.connect_timeout) == (20, 10)


# ---------------------------------------------------------------- OAuth token store
def test_variable_pair_wins_over_connection_seed(monkeypatch: pytest.MonkeyPatch) -> None:
    set_conn(monkeypatch, "oa", host=PORTAL, extra=OAUTH_EXTRA)
    stored = TokenPair("variableAccess", "variableRefresh").to_dict()
    monkeypatch.setenv("AIRFLOW_VAR_" + variable_name("oa").upper(), json.dumps(stored))
    hook = Bitrix24Hook(bitrix24_conn_id="oa")
    with rm.Mocker() as m:
        route = m.post(f"{PORTAL}/rest/profile", json={"result": {}})
        hook.call("profile")
    assert json.loads(route.last_request.body)["auth"] == "variableAccess"


def test_rotated_pair_is_written_to_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    set_conn(monkeypatch, "oa", host=PORTAL, extra=OAUTH_EXTRA)
    hook = Bitrix24Hook(bitrix24_conn_id="oa")
    written: dict[str, Any] = {}
    with (
        mock.patch("airflow.sdk.Variable.set", side_effect=lambda k, v, **kw: written.update({k: v})),
        rm.Mocker() as m,
    ):
        m.post(
            "https://oauth.example.com/oauth/token/",
            json={"access_token": "newAccess", "refresh_token": "newRefresh", "expires_in": 3600},
        )
        m.post(
            f"{PORTAL}/rest/profile",
            [
                {"status_code": 401, "json": {"error": "expired_token", "error_description": "expired"}},
                {"json": {"result": {"ID": "1"}}},
            ],
        )
        hook.call("profile")
    saved = json.loads(written[variable_name("oa")])
    assert (saved["access_token"], saved["refresh_token"]) == ("newAccess", "newRefresh")


def test_memory_fallback_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    store = AirflowVariableTokenStore("nowhere", TokenPair("a" * 8, "r" * 8), logger=logging.getLogger("t"))
    with (
        caplog.at_level(logging.WARNING),
        mock.patch("airflow.sdk.Variable.set", side_effect=ImportError("no supervisor")),
        mock.patch("airflow.sdk.Variable.get", return_value=None),
    ):
        store.save(TokenPair("b" * 8, "s" * 8))
        store.save(TokenPair("c" * 8, "t" * 8))
        assert store.load() == TokenPair("c" * 8, "t" * 8)
    assert caplog.text.count("kept in memory only") == 1
    assert "cccccccc" not in caplog.text


def test_store_lock_is_a_file_lock() -> None:
    store = AirflowVariableTokenStore("lock/me", None)
    with store.lock():
        pass
    assert "lock_me" in store.lock_path


def test_oauth_client_uses_variable_store(monkeypatch: pytest.MonkeyPatch) -> None:
    set_conn(monkeypatch, "oa", host=PORTAL, extra=OAUTH_EXTRA)
    client = Bitrix24Hook(bitrix24_conn_id="oa").get_conn()
    assert isinstance(client.auth, OAuthAuth)
    assert isinstance(client.auth.store, AirflowVariableTokenStore)
    assert "hookClientSecret" not in repr(client)


# ---------------------------------------------------------------- crm.activity.*
def test_activity_methods(webhook: Bitrix24Hook) -> None:
    with rm.Mocker() as m:
        get = m.post(BASE + "crm.activity.get", json={"result": {"ID": "5"}})
        add = m.post(BASE + "crm.activity.add", json={"result": 12})
        upd = m.post(BASE + "crm.activity.update", json={"result": True})
        dele = m.post(BASE + "crm.activity.delete", json={"result": True})
        m.post(BASE + "crm.activity.fields", json={"result": {"ID": {"type": "integer"}}})
        m.post(BASE + "crm.activity.communication.fields", json={"result": {"TYPE": {"type": "string"}}})
        lst = m.post(BASE + "crm.activity.list", json={"result": [{"ID": "5"}]})
        assert webhook.get_activity("5") == {"ID": "5"}
        assert json.loads(get.last_request.body) == {"id": 5}
        assert webhook.add_activity({"SUBJECT": "x"}) == 12
        assert json.loads(add.last_request.body) == {"fields": {"SUBJECT": "x"}}
        assert webhook.update_activity(5, {"SUBJECT": "y"}) is True
        assert json.loads(upd.last_request.body) == {"id": 5, "fields": {"SUBJECT": "y"}}
        assert webhook.delete_activity(5) is True
        assert json.loads(dele.last_request.body) == {"id": 5}
        assert webhook.activity_fields() == {"ID": {"type": "integer"}}
        assert webhook.communication_fields() == {"TYPE": {"type": "string"}}
        rows = list(webhook.iter_activities(filter={"OWNER_ID": 3}, select=["ID"], slices=1))
        assert rows == [{"ID": "5"}]
        body = json.loads(lst.last_request.body)
        assert body["filter"] == {"OWNER_ID": 3, ">ID": 0}
        assert body["order"] == {"ID": "ASC"} and body["start"] == -1


@pytest.mark.parametrize("slices", [0, -1, True, 1.5, "4"])
def test_iter_activities_refuses_a_bad_slice_count_before_any_request(
    webhook: Bitrix24Hook, slices: Any
) -> None:
    with rm.Mocker() as mocker, pytest.raises(Bitrix24ConfigError, match="slices must be"):
        webhook.iter_activities(slices=slices)
    assert mocker.call_count == 0


def test_activity_id_validation(webhook: Bitrix24Hook) -> None:
    for bad in (None, "", "abc", 0, -1, True, 1.5):
        with pytest.raises(Bitrix24ConfigError):
            webhook.get_activity(bad)


def test_get_activity_not_found(webhook: Bitrix24Hook) -> None:
    with rm.Mocker() as m:
        m.post(
            BASE + "crm.activity.get", status_code=400, json={"error": "", "error_description": "Not found"}
        )
        with pytest.raises(Bitrix24NotFound):
            webhook.get_activity(999)


def test_get_activities_keyed_by_id_in_input_order(webhook: Bitrix24Hook) -> None:
    def batch(request: Any, context: Any) -> Any:
        cmds = json.loads(request.body)["cmd"]
        return {"result": {"result": {k: [{"ID": "9"}, {"ID": "3"}] for k in cmds}, "result_error": []}}

    with rm.Mocker() as m:
        m.post(BASE + "batch", json=batch)
        m.post(BASE + "crm.activity.list", json={"result": [{"ID": "9"}, {"ID": "3"}]})
        result = webhook.get_activities([3, 9, 4])
    assert list(result) == [3, 9]
    assert result[9] == {"ID": "9"}


def test_stats_property(webhook: Bitrix24Hook) -> None:
    assert webhook.stats.requests == 0


def test_two_stores_for_one_conn_refresh_once(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two hooks (two store objects, as in two worker processes) share the Variable: one refresh only.

    The stores' in-process locks differ; the file lock plus the re-read of the Variable serialise them.
    """
    import threading

    import requests

    variables: dict[str, str] = {}
    refreshes: list[str] = []

    def token_endpoint(request: Any, context: Any) -> Any:
        refreshes.append(request.body)
        return {"access_token": "rotatedAccess", "refresh_token": "rotatedRefresh", "expires_in": 3600}

    seed = TokenPair("expiredAccess", "seedRefresh")
    stores = [AirflowVariableTokenStore("shared", seed) for _ in range(2)]
    auths = [
        OAuthAuth(
            client_id="c", client_secret="s3cretValue", store=s, oauth_server="https://oauth.example.com"
        )
        for s in stores
    ]
    barrier = threading.Barrier(2)
    with (
        mock.patch("airflow.sdk.Variable.get", side_effect=lambda k, default=None: variables.get(k, default)),
        mock.patch("airflow.sdk.Variable.set", side_effect=lambda k, v, **kw: variables.__setitem__(k, v)),
        rm.Mocker() as m,
    ):
        m.post("https://oauth.example.com/oauth/token/", json=token_endpoint)

        def work(auth: OAuthAuth) -> None:
            auth.current_pair()
            barrier.wait()
            auth.refresh(requests.Session(), stale_access_token="expiredAccess", timeout=(1, 1), verify=True)

        threads = [threading.Thread(target=work, args=(a,)) for a in auths]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
    assert len(refreshes) == 1
    assert [a.access_token() for a in auths] == ["rotatedAccess", "rotatedAccess"]
    assert json.loads(variables[variable_name("shared")])["refresh_token"] == "rotatedRefresh"
