"""Bitrix24Hook over real HTTPS against the emulator: connection forms, test_connection, OAuth, activities."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from airflow_provider_b24.client import DEFAULT_REGISTRY
from airflow_provider_b24.exceptions import Bitrix24NotFound
from airflow_provider_b24.hooks.bitrix24 import Bitrix24Hook


@pytest.fixture(autouse=True)
def _fresh_limiters() -> Iterator[None]:
    DEFAULT_REGISTRY.clear()
    yield
    DEFAULT_REGISTRY.clear()


def use(monkeypatch: pytest.MonkeyPatch, conn_id: str, conn: dict[str, Any] | str) -> Bitrix24Hook:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", conn if isinstance(conn, str) else json.dumps(conn))
    return Bitrix24Hook(bitrix24_conn_id=conn_id)


def test_test_connection_webhook(bitrix24_emulator: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    ok, message = use(monkeypatch, "wh", bitrix24_emulator.connection()).test_connection()
    assert ok is True, message
    assert "127.0.0.1" in message
    assert bitrix24_emulator.webhook_code not in message


def test_test_connection_oauth(bitrix24_emulator: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    ok, message = use(monkeypatch, "oa", bitrix24_emulator.oauth_connection()).test_connection()
    assert ok is True, message


def test_test_connection_wrong_code(bitrix24_emulator: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    conn = {**bitrix24_emulator.connection(), "password": "notTheRightCode"}
    ok, reason = use(monkeypatch, "bad", conn).test_connection()
    assert ok is False
    assert "INVALID_CREDENTIALS" in reason or "NO_AUTH_FOUND" in reason
    assert "notTheRightCode" not in reason


def test_test_connection_untrusted_certificate(
    bitrix24_emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    conn = {**bitrix24_emulator.connection(), "extra": {}}
    ok, reason = use(monkeypatch, "tls", conn).test_connection()
    assert ok is False
    assert "TLS" in reason and "verify" in reason


def test_uri_and_webhook_url_forms(bitrix24_emulator: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    emu = bitrix24_emulator
    hook = use(monkeypatch, "uri", emu.connection_uri())
    assert hook.call("profile")["ID"] == emu.user_id
    by_url = use(
        monkeypatch,
        "url",
        {"conn_type": "bitrix24", "extra": {"webhook_url": emu.webhook_url, "verify": emu.ca_cert}},
    )
    assert by_url.call("profile")["ID"] == emu.user_id


def test_activity_family(bitrix24_emulator: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    hook = use(monkeypatch, "act", bitrix24_emulator.connection())
    one = hook.get_activity(7)
    assert one["ID"] == "7"
    many = hook.get_activities([9, 3, 999_999, 3])
    assert list(many) == [9, 3]
    ids = [int(r["ID"]) for r in hook.iter_activities(select=["ID"])]
    assert ids == sorted(set(ids)) and len(ids) == 200
    fields = hook.activity_fields()
    assert "SUBJECT" in fields
    assert "VALUE" in hook.communication_fields()
    new_id = hook.add_activity(
        {
            "OWNER_TYPE_ID": 2,
            "OWNER_ID": 1,
            "TYPE_ID": 2,
            "SUBJECT": "Call from the hook",
            "RESPONSIBLE_ID": 1,
            "COMMUNICATIONS": [{"VALUE": "+10000000000", "ENTITY_ID": 1, "ENTITY_TYPE_ID": 3}],
        }
    )
    assert hook.update_activity(new_id, {"SUBJECT": "Renamed"}) is True
    assert hook.get_activity(new_id)["SUBJECT"] == "Renamed"
    assert hook.delete_activity(new_id) is True
    with pytest.raises(Bitrix24NotFound):
        hook.get_activity(new_id)


def test_oauth_rotation_through_the_hook(bitrix24_emulator: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    emu = bitrix24_emulator
    hook = use(monkeypatch, "rot", emu.oauth_connection())
    assert hook.call("profile")
    emu.expire_tokens()
    assert hook.call("crm.activity.get", {"id": 1})["ID"] == "1"
    emu.expire_tokens()
    assert hook.call("crm.activity.get", {"id": 2})["ID"] == "2"
    assert hook.stats.refreshes == 2
    # outside a task the Variable cannot be written: the rotated pair lives in memory
    pair = hook.get_conn().auth.store.load()  # type: ignore[union-attr]
    assert pair is not None and pair.refresh_token != emu.oauth_connection()["extra"]["refresh_token"]


def test_iter_activities_reads_id_slices_at_once_like_one_chain(monkeypatch: pytest.MonkeyPatch) -> None:
    """The default (4 slices) returns what one keyset chain returns, in ID order, each row once,
    with the ID added for the slicing and removed again when not selected."""
    import math

    from airflow_provider_b24.testing import Bitrix24Emulator

    with Bitrix24Emulator(activities=24_000, seed=11, rate_limit=None) as emu:
        hook = use(monkeypatch, "slices", emu.connection())
        hidden = emu.store.hidden_ids()
        visible = [i for i in emu.store.ids() if i not in hidden]

        before = emu.stats["requests"]
        sliced = list(hook.iter_activities(select=["ID", "SUBJECT"]))
        sliced_requests = emu.stats["requests"] - before
        assert [int(row["ID"]) for row in sliced] == sorted(visible)
        assert sliced_requests <= math.ceil(len(visible) / 2500) + 4 + 1

        before = emu.stats["requests"]
        chain = list(hook.iter_activities(select=["ID", "SUBJECT"], slices=1))
        assert emu.stats["requests"] - before <= math.ceil(len(visible) / 2500) + 1  # its first page is alone
        assert sliced == chain

        subjects = list(hook.iter_activities(select=["SUBJECT"]))
        assert subjects == [{"SUBJECT": row["SUBJECT"]} for row in chain]

        flt = {"TYPE_ID": 2}
        assert list(hook.iter_activities(filter=flt)) == list(hook.iter_activities(filter=flt, slices=1))
