"""Bitrix24GetActivitiesOperator and fetch_activities over real HTTPS against the bundled emulator.

Request counts are what the emulator served (``emu.stats["requests"]``), not what the client believes
it sent. The operator builds its own hook from ``AIRFLOW_CONN_BITRIX24_DEFAULT``.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import pendulum
import pytest

from airflow_provider_b24._compat import AirflowFailException, serde_deserialize, serde_serialize
from airflow_provider_b24.activities import ACTIVITY_FIELD_TYPES, fetch_activities, parse_activity
from airflow_provider_b24.client import Bitrix24Client, ClientConfig, WebhookAuth
from airflow_provider_b24.exceptions import Bitrix24AccessDenied, Bitrix24NotFound, Bitrix24ServerError
from airflow_provider_b24.operators.activity import Bitrix24GetActivitiesOperator
from airflow_provider_b24.testing import Bitrix24Emulator

N_BIG = 10_000
#: Surface errors at once: no client retries, no waiting for a 429 reset, no client-side limiter.
FAST_EXTRA = {"max_retries": 0, "operating_max_wait": 0, "rate_limit": 0}


class TI:
    def __init__(self) -> None:
        self.pushed: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.pushed[key] = value


def use(emu: Bitrix24Emulator, monkeypatch: pytest.MonkeyPatch, **extra: Any) -> None:
    conn = emu.connection()
    conn["extra"] = {**conn["extra"], **FAST_EXTRA, **extra}
    monkeypatch.setenv("AIRFLOW_CONN_BITRIX24_DEFAULT", json.dumps(conn))


def served(emu: Bitrix24Emulator) -> int:
    return int(emu.stats["requests"])


def run(**kwargs: Any) -> tuple[list[dict[str, Any]], TI]:
    kwargs.setdefault("task_id", "fetch")
    op = Bitrix24GetActivitiesOperator(**kwargs)
    ti = TI()
    try:
        return op.execute({"ti": ti}), ti  # type: ignore[arg-type]
    finally:
        op.hook.close()


@pytest.fixture(scope="module")
def big_emu() -> Iterator[Bitrix24Emulator]:
    """10,000 activities (IDs 1..10000), shared read-only by the tests of this module."""
    with Bitrix24Emulator(activities=N_BIG, seed=5, rate_limit=None) as emu:
        yield emu


@pytest.fixture
def big(big_emu: Bitrix24Emulator, monkeypatch: pytest.MonkeyPatch) -> Bitrix24Emulator:
    use(big_emu, monkeypatch)
    return big_emu


@pytest.fixture
def small(bitrix24_emulator_factory: Callable[..., Bitrix24Emulator], monkeypatch: pytest.MonkeyPatch) -> Any:
    """40 activities, free to delete and hide."""
    emu = bitrix24_emulator_factory(activities=40, seed=3, rate_limit=None)
    use(emu, monkeypatch)
    return emu


@pytest.mark.parametrize("n", [1, 50, 51, 2500, 2501, 10_000])
def test_request_counts(big: Bitrix24Emulator, n: int) -> None:
    ids = list(range(1, n + 1))
    before = served(big)
    result, ti = run(activity_ids=ids)
    assert served(big) - before == math.ceil(n / 2500)
    assert [row["ID"] for row in result] == ids
    assert ti.pushed == {"missing_ids": []}


def test_get_strategy_request_count(big: Bitrix24Emulator) -> None:
    before = served(big)
    result, _ = run(activity_ids=list(range(1, 121)), strategy="get")
    assert served(big) - before == 3  # 50 crm.activity.get per batch
    assert len(result) == 120


def test_client_level_counts_match_the_emulator(big_emu: Bitrix24Emulator) -> None:
    client = Bitrix24Client(
        big_emu.base_url,
        WebhookAuth(user_id=big_emu.user_id, code=big_emu.webhook_code),
        ClientConfig(verify=big_emu.verify, rate_limit=0, max_retries=0),
    )
    with client:
        before = served(big_emu)
        result = fetch_activities(client, range(1, 2502))
        assert result.requests == served(big_emu) - before == 2
        assert client.stats.requests == 2


def test_input_order_types_and_duplicates(big: Bitrix24Emulator) -> None:
    ids = random.Random(11).sample(range(1, N_BIG + 1), 3000)
    with_dupes = ids + ids[:100] + [str(i) for i in ids[100:200]]
    result, ti = run(activity_ids=with_dupes)
    assert [row["ID"] for row in result] == ids
    assert ti.pushed["missing_ids"] == []
    row = result[0]
    expected = parse_activity(big.store.get(ids[0]) or {})
    assert row == {k: expected[k] for k in row}
    for activity in result:
        assert type(activity["ID"]) is int
        assert isinstance(activity["COMPLETED"], bool)
        assert isinstance(activity["CREATED"], pendulum.DateTime)
        assert activity["DEADLINE"] is None or isinstance(activity["DEADLINE"], pendulum.DateTime)
        assert activity["RESULT_SUM"] is None or isinstance(activity["RESULT_SUM"], Decimal)
        assert isinstance(activity["SETTINGS"], dict)


def test_no_deadline_todos_parse_to_none(big: Bitrix24Emulator) -> None:
    todo_ids = [
        i
        for i in big.store.ids()[:2000]
        if str((big.store.get(i) or {}).get("DEADLINE") or "").startswith("9999-")
    ][:20]
    if not todo_ids:
        pytest.skip("the generator produced no open-ended to-dos in the first 2000 IDs")
    result, _ = run(activity_ids=todo_ids)
    assert [row["DEADLINE"] for row in result] == [None] * len(todo_ids)


def test_select_communications_and_files(big: Bitrix24Emulator) -> None:
    result, _ = run(activity_ids=[1, 2, 3], select=["COMMUNICATIONS", "FILES"])
    for row in result:
        assert isinstance(row["COMMUNICATIONS"], list)
        assert isinstance(row["FILES"], list)
        for comm in row["COMMUNICATIONS"]:
            assert type(comm["ID"]) is int
    plain, _ = run(activity_ids=[1])
    assert "COMMUNICATIONS" not in plain[0]


def test_select_plain_fields(big: Bitrix24Emulator) -> None:
    result, _ = run(activity_ids=[7, 3], select=["SUBJECT", "COMPLETED"])
    assert [set(row) for row in result] == [{"ID", "SUBJECT", "COMPLETED"}] * 2
    assert [row["ID"] for row in result] == [7, 3]


def test_result_survives_xcom(big: Bitrix24Emulator) -> None:
    result, ti = run(activity_ids=list(range(1, 301)), select=["COMMUNICATIONS"])
    assert serde_deserialize(json.loads(json.dumps(serde_serialize(result)))) == result
    assert serde_deserialize(json.loads(json.dumps(serde_serialize(ti.pushed["missing_ids"])))) == []


class TestMissing:
    def _prepare(self, emu: Bitrix24Emulator) -> None:
        emu.store.delete(5)
        emu.store.set_hidden(7)

    def test_fail(self, small: Bitrix24Emulator) -> None:
        self._prepare(small)
        op = Bitrix24GetActivitiesOperator(task_id="fetch", activity_ids=[1, 5, 2, 7, 999])
        ti = TI()
        with pytest.raises(AirflowFailException) as info:
            op.execute({"ti": ti})  # type: ignore[arg-type]
        assert ti.pushed == {"missing_ids": [5, 7, 999]}
        assert "3 of 5 activities were not returned" in str(info.value)
        assert "5, 7, 999" in str(info.value)

    def test_warn(self, small: Bitrix24Emulator) -> None:
        self._prepare(small)
        result, ti = run(activity_ids=[1, 5, 2, 7, 999], on_missing="warn")
        assert [row["ID"] for row in result] == [1, 2]
        assert ti.pushed == {"missing_ids": [5, 7, 999]}

    def test_ignore(self, small: Bitrix24Emulator) -> None:
        self._prepare(small)
        result, ti = run(activity_ids=[7, 1, 5], on_missing="ignore")
        assert [row["ID"] for row in result] == [1]
        assert ti.pushed == {"missing_ids": [7, 5]}

    def test_get_strategy_tells_not_found_from_access_denied(self, small: Bitrix24Emulator) -> None:
        self._prepare(small)
        client = Bitrix24Client(
            small.base_url,
            WebhookAuth(user_id=small.user_id, code=small.webhook_code),
            ClientConfig(verify=small.verify, rate_limit=0, max_retries=0),
        )
        with client:
            result = fetch_activities(client, [1, 5, 7, 999], strategy="get")
        assert [row["ID"] for row in result.activities] == ["1"]
        assert result.missing_ids == [5, 7, 999]
        assert isinstance(result.errors[5], Bitrix24NotFound)
        assert isinstance(result.errors[7], Bitrix24AccessDenied)
        assert isinstance(result.errors[999], Bitrix24NotFound)

    def test_get_strategy_operator_message(self, small: Bitrix24Emulator) -> None:
        self._prepare(small)
        with pytest.raises(AirflowFailException) as info:
            run(activity_ids=[1, 5, 7], strategy="get")
        assert "5 (Bitrix24NotFound), 7 (Bitrix24AccessDenied)" in str(info.value)


class TestErrors:
    def test_bad_webhook_code_fails_without_retries(
        self, small: Bitrix24Emulator, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        conn = small.connection()
        conn["password"] = "wrong-code-0000"
        conn["extra"] = {**conn["extra"], **FAST_EXTRA}
        monkeypatch.setenv("AIRFLOW_CONN_BITRIX24_DEFAULT", json.dumps(conn))
        with pytest.raises(AirflowFailException, match="not retrying") as info:
            run(activity_ids=[1])
        assert "wrong-code-0000" not in str(info.value)

    def test_server_error_that_outlived_retries_propagates(self, small: Bitrix24Emulator) -> None:
        small.faults.add("http_500_json", method="batch", times=1)
        with pytest.raises(Bitrix24ServerError):
            run(activity_ids=[1, 2])

    def test_list_command_access_denied_fails(self, small: Bitrix24Emulator) -> None:
        small.faults.add(
            "batch_command_error", method="crm.activity.list", times=1, error_description="Access denied."
        )
        with pytest.raises(AirflowFailException, match="Access denied"):
            run(activity_ids=[1, 2])

    def test_bad_ids_make_no_request(self, small: Bitrix24Emulator) -> None:
        before = served(small)
        with pytest.raises(AirflowFailException, match="position 1"):
            run(activity_ids=[1, "two"])
        assert served(small) == before

    def test_connection_retry_recovers(
        self, small: Bitrix24Emulator, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        use(small, monkeypatch, max_retries=2)
        small.faults.add("query_limit", method="batch", times=1)
        before = served(small)
        monkeypatch.setattr("time.sleep", lambda _s: None)  # the client's backoff: no real waiting
        result, _ = run(activity_ids=[3, 1])
        assert [row["ID"] for row in result] == [3, 1]
        assert served(small) - before == 2


def test_field_table_matches_crm_activity_fields(big_emu: Bitrix24Emulator) -> None:
    """The parser's type table is what the portal declares (so a live portal can be checked the same way)."""
    client = Bitrix24Client(
        big_emu.base_url,
        WebhookAuth(user_id=big_emu.user_id, code=big_emu.webhook_code),
        ClientConfig(verify=big_emu.verify, rate_limit=0, max_retries=0),
    )
    with client:
        fields = client.call("crm.activity.fields")
        declared = {name: spec["type"] for name, spec in fields.items()}
        assert declared == dict(ACTIVITY_FIELD_TYPES)
        # The default select ["*"] returns what crm.activity.get returns.
        got = client.call("crm.activity.get", {"id": 5})
        listed = client.call("crm.activity.list", {"filter": {"@ID": [5]}, "select": ["*"], "start": -1})
        assert listed == [got]
