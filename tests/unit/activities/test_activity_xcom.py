"""Parsed activities survive Airflow's XCom path: serde serialize -> JSON text -> deserialize.

This is the path ``BaseXCom.serialize_value`` / ``deserialize_value`` take (serde through ``_compat``:
Airflow 3.3 keeps it in ``airflow.sdk.serde``, 3.1 in ``airflow.serialization.serde``). The pitfall it
guards against: stdlib datetimes with a fixed offset fail when the downstream task pulls them.
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pendulum
import pytest

from airflow_provider_b24._compat import serde_deserialize, serde_serialize
from airflow_provider_b24.activities import parse_activity
from tests.conftest import SAMPLES_DIR


def _round_trip(value: Any) -> Any:
    return serde_deserialize(json.loads(json.dumps(serde_serialize(value))))


@pytest.fixture
def activity() -> dict[str, Any]:
    raw = json.loads((SAMPLES_DIR / "crm.activity.get.200.json").read_text())["result"]
    raw.update(
        {
            "RESULT_SUM": "1500.50",
            "RESULT_VALUE": "0.10",
            "DEADLINE": "9999-12-31T00:00:00+03:00",
            "IS_INCOMING_CHANNEL": "N",
            "COMMUNICATIONS": [
                {"ID": "1", "TYPE": "PHONE", "VALUE": "+1", "ENTITY_ID": "15", "ENTITY_TYPE_ID": "3",
                 "ENTITY_SETTINGS": {"NAME": "Андрей", "COMPANY_ID": "4"}},
            ],
            "FILES": [{"id": "7", "url": "https://example.bitrix24.com/f?fileId=7"}],
            "BINDINGS": [{"OWNER_TYPE_ID": "2", "OWNER_ID": "10"}],
            "START_TIME": "2024-06-30T23:59:59-05:00",
        }
    )  # fmt: skip
    return parse_activity(raw)


def test_parsed_activity_round_trips_unchanged(activity: dict[str, Any]) -> None:
    back = _round_trip([activity])
    assert back == [activity]
    row = back[0]
    assert isinstance(row["CREATED"], pendulum.DateTime)
    assert row["CREATED"].utcoffset() == dt.timedelta(hours=2)
    assert row["START_TIME"].utcoffset() == dt.timedelta(hours=-5)
    assert isinstance(row["RESULT_SUM"], Decimal)
    assert row["RESULT_SUM"] == Decimal("1500.50")
    assert row["DEADLINE"] is None
    assert row["COMPLETED"] is True
    assert row["IS_INCOMING_CHANNEL"] is False
    assert type(row["ID"]) is int
    assert row["SETTINGS"] == {}
    assert row["COMMUNICATIONS"][0]["ENTITY_SETTINGS"]["COMPANY_ID"] == 4


def test_through_base_xcom(activity: dict[str, Any]) -> None:
    from airflow.sdk.execution_time.xcom import BaseXCom

    stored = json.dumps(BaseXCom.serialize_value([activity], key="return_value"))
    back = BaseXCom.deserialize_value(SimpleNamespace(value=json.loads(stored)))
    assert back == [activity]


def test_missing_ids_round_trip() -> None:
    assert _round_trip([3, 1, 2]) == [3, 1, 2]


def test_stdlib_fixed_offset_is_what_parse_activity_avoids() -> None:
    stdlib = dt.datetime(2020, 9, 27, 13, 26, 55, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    parsed = parse_activity({"CREATED": stdlib})["CREATED"]
    assert _round_trip(parsed) == stdlib
