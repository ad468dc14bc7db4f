"""Fidelity: third-party clients (official b24pysdk, community fast-bitrix24) against the emulator.

They must get what a real portal gives: full lists, fetch-by-IDs, one activity, and the legacy
not-found error (HTTP 400, empty ``error``, ``"Not found"``). Skipped when the ``bench`` extra is
not installed. Neither library takes a CA path for its ``requests``/``aiohttp`` calls, so b24pysdk
gets ``REQUESTS_CA_BUNDLE`` and fast-bitrix24 gets its own ``aiohttp.ClientSession``.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

import pytest

from airflow_provider_b24.testing import Bitrix24Emulator

N = 180  # > 3 pages of 50, < one 50-command batch of pages


@pytest.fixture(scope="module")
def emu() -> Any:
    with Bitrix24Emulator(activities=N, seed=2) as emulator:
        emulator.store.set_hidden(11)
        yield emulator


@pytest.fixture
def pysdk_client(emu: Bitrix24Emulator, monkeypatch: pytest.MonkeyPatch) -> Any:
    b24pysdk = pytest.importorskip("b24pysdk")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(emu.ca_cert))
    # b24pysdk always builds https://{domain}/rest/...; the port goes in the domain.
    webhook = b24pysdk.BitrixWebhook(
        domain=f"127.0.0.1:{emu.port}", webhook_token=f"{emu.user_id}/{emu.webhook_code}"
    )
    return b24pysdk.Client(webhook)


VISIBLE = [i for i in range(1, N + 1) if i != 11]


def test_b24pysdk_lists_everything(pysdk_client: Any, emu: Bitrix24Emulator) -> None:
    rows = list(
        pysdk_client.crm.activity.list(select=["ID", "SUBJECT"], order={"ID": "ASC"}).as_list().result
    )
    assert [int(r["ID"]) for r in rows] == VISIBLE
    fast = list(pysdk_client.crm.activity.list(select=["ID"]).as_list_fast().result)
    assert [int(r["ID"]) for r in fast] == VISIBLE  # keyset batch with $result[req_n][49][ID]


def test_b24pysdk_fetch_by_ids_and_get(pysdk_client: Any) -> None:
    ids = list(range(1, 121))
    rows = list(pysdk_client.crm.activity.list(select=["ID"], filter={"@ID": ids}).as_list().result)
    assert sorted(int(r["ID"]) for r in rows) == [i for i in ids if i != 11]
    one = pysdk_client.crm.activity.get(5).result
    assert one["ID"] == "5" and isinstance(one["OWNER_ID"], str)


def test_b24pysdk_sees_legacy_errors(pysdk_client: Any) -> None:
    errors = pytest.importorskip("b24pysdk.errors")
    with pytest.raises(errors.BitrixAPIBadRequest) as caught:
        _ = pysdk_client.crm.activity.get(999_999).result
    assert caught.value.status_code == 400 and caught.value.error == "" and "Not found" in str(caught.value)
    with pytest.raises(errors.BitrixAPIBadRequest) as denied:
        _ = pysdk_client.crm.activity.get(11).result
    assert "Access denied." in str(denied.value)


def _run_fast_bitrix24(emu: Bitrix24Emulator, job: Any) -> Any:
    fast_bitrix24 = pytest.importorskip("fast_bitrix24")
    aiohttp = pytest.importorskip("aiohttp")

    async def runner() -> Any:
        context = ssl.create_default_context(cafile=emu.ca_cert)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as session:
            client = fast_bitrix24.BitrixAsync(emu.webhook_url, verbose=False, client=session)
            return await job(client)

    return asyncio.run(runner())


def test_fast_bitrix24_get_all_and_get_by_id(emu: Bitrix24Emulator) -> None:
    async def job(client: Any) -> Any:
        everything = await client.get_all("crm.activity.list", {"select": ["ID"]})
        by_id = await client.get_by_ID("crm.activity.get", [1, 2, 3, 60, 180])
        listed = await client.get_all("crm.activity.list", {"select": ["ID"], "filter": {"@ID": [4, 5, 6]}})
        return everything, by_id, listed

    everything, by_id, listed = _run_fast_bitrix24(emu, job)
    assert sorted(int(r["ID"]) for r in everything) == VISIBLE
    assert sorted(by_id) == ["1", "180", "2", "3", "60"] and by_id["60"]["ID"] == "60"
    assert sorted(int(r["ID"]) for r in listed) == [4, 5, 6]


def test_fast_bitrix24_sees_legacy_not_found(emu: Bitrix24Emulator) -> None:
    fast_bitrix24 = pytest.importorskip("fast_bitrix24")

    async def job(client: Any) -> Any:
        with pytest.raises(fast_bitrix24.server_response.ErrorInServerResponseException) as caught:
            await client.get_by_ID("crm.activity.get", [1, 999_999])
        return caught.value.args[0]

    errors = _run_fast_bitrix24(emu, job)
    assert errors == {"999999": {"error": "", "error_description": "Not found"}}
