"""The client over real HTTPS against the emulator (loopback): paging, batch, OAuth, limits, faults."""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest

from airflow_provider_b24.client import (
    Bitrix24Client,
    ClientConfig,
    LimiterRegistry,
    MemoryTokenStore,
    OAuthAuth,
    TokenPair,
    WebhookAuth,
)
from airflow_provider_b24.exceptions import (
    Bitrix24AuthError,
    Bitrix24NotFound,
    Bitrix24OperationTimeLimit,
    Bitrix24ServerError,
    Bitrix24TransportError,
)


def webhook_client(emu: Any, **config: Any) -> Bitrix24Client:
    config.setdefault("verify", emu.ca_cert)
    config.setdefault("backoff_base", 0.05)
    config.setdefault("backoff_max", 0.2)
    return Bitrix24Client(
        emu.base_url,
        WebhookAuth(user_id=emu.user_id, code=emu.webhook_code),
        ClientConfig(**config),
        logger=logging.getLogger("it.bitrix24"),
        limiters=LimiterRegistry(),
    )


def oauth_client(emu: Any, store: Any, **config: Any) -> Bitrix24Client:
    config.setdefault("verify", emu.ca_cert)
    auth = OAuthAuth(
        client_id=emu.client_id, client_secret=emu.client_secret, store=store, oauth_server=emu.base_url
    )
    return Bitrix24Client(emu.base_url, auth, ClientConfig(**config), limiters=LimiterRegistry())


@pytest.fixture(scope="module")
def big_emulator() -> Any:
    from airflow_provider_b24.testing import Bitrix24Emulator

    with Bitrix24Emulator(activities=10_000, seed=3) as emu:
        yield emu


def store_ids(emu: Any) -> list[int]:
    return sorted(int(row["ID"]) for row in emu.store.list_all()) if hasattr(emu.store, "list_all") else []


def test_keyset_paging_10000_rows_in_5_requests(big_emulator: Any) -> None:
    client = webhook_client(big_emulator, rate_limit=0)
    started = time.monotonic()
    ids = [int(r["ID"]) for r in client.iter_list("crm.activity.list", {"select": ["ID"]})]
    elapsed = time.monotonic() - started
    assert len(ids) == 10_000
    assert ids == sorted(set(ids))  # ascending, no repeats
    assert client.stats.requests == 5
    assert elapsed < 20


def test_offset_paging_no_row_lost_or_repeated(big_emulator: Any) -> None:
    client = webhook_client(big_emulator, rate_limit=0)
    keyset = {int(r["ID"]) for r in client.iter_list("crm.activity.list", {"select": ["ID"]})}
    rows = list(
        client.iter_list(
            "crm.activity.list",
            {"select": ["ID", "START_TIME"], "order": {"START_TIME": "DESC"}, "filter": {"<ID": 3001}},
        )
    )
    ids = [int(r["ID"]) for r in rows]
    assert len(ids) == len(set(ids)) == 3000
    assert set(ids) == {i for i in keyset if i < 3001}


def test_keyset_with_filter_and_lower_bound(big_emulator: Any) -> None:
    client = webhook_client(big_emulator, rate_limit=0)
    fast = [r["ID"] for r in client.iter_list("crm.activity.list", {"filter": {">=ID": 9000, "TYPE_ID": 2}})]
    slow = [
        r["ID"]
        for r in client.iter_list("crm.activity.list", {"filter": {">=ID": 9000, "TYPE_ID": 2}}, fast=False)
    ]
    assert fast and sorted(fast, key=int) == sorted(slow, key=int)
    assert len(fast) == len(set(fast))


def test_batch_split_and_partial_errors(bitrix24_emulator: Any) -> None:
    client = webhook_client(bitrix24_emulator)
    commands = {f"g{i}": ("crm.activity.get", {"id": i}) for i in range(1, 121)}
    commands["missing"] = ("crm.activity.get", {"id": 999_999})
    result = client.batch(commands)
    assert result.requests == 3
    assert len(result.results) == 120
    assert list(result.results)[:3] == ["g1", "g2", "g3"]
    assert isinstance(result.errors["missing"], Bitrix24NotFound)
    assert result.results["g5"]["ID"] == "5"


def test_legacy_not_found_over_http(bitrix24_emulator: Any) -> None:
    client = webhook_client(bitrix24_emulator)
    with pytest.raises(Bitrix24NotFound) as info:
        client.call("crm.activity.get", {"id": 999_999})
    assert info.value.http_status == 400
    assert info.value.code == ""


def test_wrong_webhook_code(bitrix24_emulator: Any) -> None:
    client = Bitrix24Client(
        bitrix24_emulator.base_url,
        WebhookAuth(user_id=bitrix24_emulator.user_id, code="wrongCodeValue"),
        ClientConfig(verify=bitrix24_emulator.ca_cert),
        limiters=LimiterRegistry(),
    )
    with pytest.raises(Bitrix24AuthError) as info:
        client.call("profile")
    assert info.value.code in ("INVALID_CREDENTIALS", "NO_AUTH_FOUND")
    assert "wrongCodeValue" not in str(info.value)


def test_oauth_refresh_and_rotation(bitrix24_emulator: Any) -> None:
    emu = bitrix24_emulator
    access, refresh = emu.issue_tokens()
    store = MemoryTokenStore(TokenPair(access, refresh))
    client = oauth_client(emu, store)
    assert client.call("profile")["ID"]
    emu.expire_tokens()
    assert client.call("crm.activity.get", {"id": 1})["ID"] == "1"
    first = store.load()
    assert first is not None and first.refresh_token != refresh and first.access_token != access
    emu.expire_tokens()
    client.call("profile")
    second = store.load()
    assert second is not None and second.refresh_token != first.refresh_token
    assert client.stats.refreshes == 2
    # the rotated-away refresh token is dead: a client still holding it fails with invalid_grant
    stale = oauth_client(emu, MemoryTokenStore(TokenPair(first.access_token, first.refresh_token)))
    with pytest.raises(Bitrix24AuthError, match="re-authorised"):
        stale.call("profile")


def test_oauth_revoked_refresh_token(bitrix24_emulator: Any) -> None:
    emu = bitrix24_emulator
    access, refresh = emu.issue_tokens()
    client = oauth_client(emu, MemoryTokenStore(TokenPair(access, refresh)))
    emu.expire_tokens()
    emu.revoke_refresh_tokens()
    with pytest.raises(Bitrix24AuthError) as info:
        client.call("profile")
    assert info.value.code == "invalid_grant"


def test_limiter_prevents_503s(bitrix24_emulator_factory: Any) -> None:
    emu = bitrix24_emulator_factory(activities=50, rate_limit=20.0, burst=10)
    client = webhook_client(emu, rate_limit=20.0, burst=10)
    started = time.monotonic()
    for _ in range(40):
        client.call("server.time")
    elapsed = time.monotonic() - started
    assert emu.stats["rejected_rate_limit"] == 0
    assert client.stats.rejected_503 == 0
    assert 1.2 <= client.stats.limiter_wait_s <= elapsed + 0.1


def test_unthrottled_client_recovers_from_503s(bitrix24_emulator_factory: Any) -> None:
    emu = bitrix24_emulator_factory(activities=50, rate_limit=20.0, burst=5)
    client = webhook_client(emu, rate_limit=0, max_retries=10)
    for _ in range(30):
        client.call("server.time")
    assert client.stats.rejected_503 > 0
    assert emu.stats["rejected_rate_limit"] == client.stats.rejected_503


def test_operation_time_limit_short_wait_then_success(bitrix24_emulator: Any) -> None:
    bitrix24_emulator.faults.add("operation_time_limit", method="crm.activity.list", reset_in=1)
    client = webhook_client(bitrix24_emulator)
    started = time.monotonic()
    assert client.call("crm.activity.list", {"start": -1})
    assert client.stats.operating_waits == 1
    assert time.monotonic() - started >= 0.9


def test_operation_time_limit_long_wait_raises(bitrix24_emulator: Any) -> None:
    bitrix24_emulator.faults.add("operation_time_limit", method="crm.activity.list", reset_in=300)
    client = webhook_client(bitrix24_emulator)
    with pytest.raises(Bitrix24OperationTimeLimit) as info:
        client.call("crm.activity.list", {"start": -1})
    assert info.value.reset_at is not None and info.value.reset_at > time.time() + 200


@pytest.mark.parametrize(
    "kind",
    [
        "http_500_html",
        "http_502_html",
        "http_500_json",
        "truncated_json",
        "malformed_json",
        "connection_reset",
        "query_limit",
    ],
)
def test_transient_faults_are_retried_for_reads(bitrix24_emulator: Any, kind: str) -> None:
    bitrix24_emulator.faults.add(kind, method="crm.activity.get", times=2)
    client = webhook_client(bitrix24_emulator, rate_limit=50.0)  # a 503 fills the bucket: drain it fast
    assert client.call("crm.activity.get", {"id": 2})["ID"] == "2"
    assert client.stats.retries == 2


def test_write_not_resent_after_connection_reset(bitrix24_emulator: Any) -> None:
    emu = bitrix24_emulator
    emu.faults.add("connection_reset", method="crm.activity.add")
    client = webhook_client(emu)
    fields = {
        "OWNER_TYPE_ID": 2,
        "OWNER_ID": 1,
        "TYPE_ID": 2,
        "SUBJECT": "reset",
        "RESPONSIBLE_ID": 1,
        "COMMUNICATIONS": [{"VALUE": "+100", "ENTITY_ID": 1, "ENTITY_TYPE_ID": 3}],
    }
    with pytest.raises(Bitrix24TransportError):
        client.call("crm.activity.add", {"fields": fields})
    assert emu.stats["requests"] == 1


def test_write_not_resent_after_read_timeout(bitrix24_emulator: Any) -> None:
    emu = bitrix24_emulator
    emu.faults.add("slow", method="crm.activity.delete", seconds=2)
    client = webhook_client(emu, timeout=0.5)
    with pytest.raises(Bitrix24TransportError) as info:
        client.call("crm.activity.delete", {"id": 3})
    assert info.value.code == "READ_TIMEOUT"
    assert client.stats.requests == 1


def test_html_error_page_after_retries(bitrix24_emulator: Any) -> None:
    bitrix24_emulator.faults.add("http_500_html", method="profile", times=None)
    client = webhook_client(bitrix24_emulator, max_retries=1)
    with pytest.raises(Bitrix24ServerError) as info:
        client.call("profile")
    assert info.value.http_status == 500
    assert client.stats.requests == 2


def test_redirect_repeats_post(bitrix24_emulator: Any, caplog: pytest.LogCaptureFixture) -> None:
    emu = bitrix24_emulator
    emu.faults.add("redirect", method="crm.activity.get")
    client = webhook_client(emu)
    with caplog.at_level(logging.WARNING):
        assert client.call("crm.activity.get", {"id": 4})["ID"] == "4"
    assert client.stats.redirects == 1
    assert "moved" in caplog.text
    assert emu.webhook_code not in caplog.text


def test_no_secret_in_debug_logs(bitrix24_emulator: Any, caplog: pytest.LogCaptureFixture) -> None:
    emu = bitrix24_emulator
    emu.faults.add("http_500_json", method="crm.activity.get")
    client = webhook_client(emu)
    with caplog.at_level(logging.DEBUG):
        client.call("crm.activity.get", {"id": 1})
        list(client.iter_list("crm.activity.list", {"select": ["ID"]}))
        with pytest.raises(Bitrix24NotFound):
            client.call("crm.activity.get", {"id": 10**7})
    # urllib3 logs every request path at DEBUG: its lines are captured, with the code redacted
    pool_lines = [r.getMessage() for r in caplog.records if r.name == "urllib3.connectionpool"]
    assert any("/rest/1/***/" in line for line in pool_lines)
    assert emu.webhook_code not in caplog.text
    assert "/rest/1/***/" in caplog.text
