"""Bitrix24GetActivitiesOperator in real ``airflow dags test`` runs against the emulator in this process.

The IDs come from an upstream task as an XComArg, as a Jinja-rendered string, and through
``.partial(...).expand(...)``; downstream tasks report the types they received, proving that parsed
activities (pendulum ``DateTime`` with the portal's offset, ``Decimal``, ``bool``) survive XCom.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pendulum
import pytest

from airflow_provider_b24.activities import parse_activity
from airflow_provider_b24.testing import Bitrix24Emulator

pytestmark = pytest.mark.e2e

DAGS = Path(__file__).parent / "dags"
EXISTING = [12, 4, 7]
ABSENT = 999_999
CONF_IDS: list[Any] = [12, 4, "7", 4, ABSENT]


@pytest.fixture
def dags_folder(tmp_path: Path) -> Path:
    """Only this test's DAG files (others in tests/e2e/dags are not parsed)."""
    folder = tmp_path / "dags"
    folder.mkdir()
    for path in DAGS.glob("op_*.py"):
        shutil.copy(path, folder / path.name)
    return folder


@pytest.fixture
def emu(bitrix24_emulator_factory: Callable[..., Bitrix24Emulator]) -> Bitrix24Emulator:
    emulator = bitrix24_emulator_factory(activities=20, seed=9, rate_limit=None)
    emulator.store.update(12, {"RESULT_SUM": "1500.50", "RESULT_CURRENCY_ID": "EUR"})
    return emulator


def _env(emu: Bitrix24Emulator) -> dict[str, str]:
    return {"AIRFLOW_CONN_BITRIX24_DEFAULT": json.dumps(emu.connection())}


def _expected(emu: Bitrix24Emulator, ids: list[int]) -> list[dict[str, Any]]:
    return [parse_activity(emu.store.get(i) or {}) for i in ids]


def test_ids_from_xcomarg_jinja_and_expand(
    airflow_runner: Any, dags_folder: Path, emu: Bitrix24Emulator
) -> None:
    result = airflow_runner.run_dag("op_get_activities", dags_folder, env=_env(emu), conf={"ids": CONF_IDS})
    assert result.state == "success", result.output[-4000:]

    # XComArg: the operator's own XComs, read back from the metadata DB.
    fetched = result.xcom("fetch_xcomarg")
    assert [a["ID"] for a in fetched] == EXISTING  # input order, duplicates dropped
    expected = _expected(emu, EXISTING)
    for got, want in zip(fetched, expected, strict=True):
        assert got == {k: want[k] for k in got}
        assert isinstance(got["CREATED"], pendulum.DateTime)
        assert got["CREATED"].utcoffset().total_seconds() == 3 * 3600
        assert isinstance(got["COMMUNICATIONS"], list)
    assert str(fetched[0]["RESULT_SUM"]) in ("1500.50", "1500.5")
    assert result.xcom("fetch_xcomarg", key="missing_ids") == [ABSENT]

    # What the downstream task received, type by type.
    described = result.xcom("describe_xcomarg")
    assert [d["id"] for d in described] == EXISTING
    types = described[0]["types"]
    assert types["ID"] == "int"
    assert types["COMPLETED"] == "bool"
    assert types["CREATED"] == "DateTime"
    assert types["RESULT_SUM"] == "Decimal"
    assert types["SETTINGS"] == "dict"
    assert types["COMMUNICATIONS"] == "list"
    assert described[0]["created_offset_s"] == 3 * 3600

    # Jinja: the rendered string "[12, 4, '7', 4, 999999]" is coerced the same way.
    assert [a["ID"] for a in result.xcom("fetch_jinja")] == EXISTING
    assert result.xcom("fetch_jinja", key="missing_ids") == [ABSENT]
    assert result.rendered_fields("fetch_jinja").get("activity_ids") in (str(CONF_IDS), repr(CONF_IDS))
    assert result.xcom("describe_jinja")[0]["types"]["DEADLINE"] in ("DateTime", "NoneType")

    # .expand: one mapped task per element, each fetching one ID.
    assert {idx: result.task_state("fetch_mapped", idx) for idx in range(len(CONF_IDS))} == dict.fromkeys(
        range(len(CONF_IDS)), "success"
    )
    per_index = result.xcoms("fetch_mapped")
    assert {idx: [a["ID"] for a in acts] for idx, acts in per_index.items()} == {
        0: [12],
        1: [4],
        2: [7],
        3: [4],
        4: [],
    }
    assert result.xcoms("fetch_mapped", key="missing_ids") == {0: [], 1: [], 2: [], 3: [], 4: [ABSENT]}
    assert [d["id"] for d in result.xcom("describe_mapped")] == [12, 4, 7, 4]
    assert result.xcom("describe_mapped")[0]["types"]["CREATED"] == "DateTime"


def test_missing_ids_fail_the_task_without_retries(
    airflow_runner: Any, dags_folder: Path, emu: Bitrix24Emulator
) -> None:
    result = airflow_runner.run_dag(
        "op_get_activities_missing", dags_folder, env=_env(emu), conf={"ids": [4, ABSENT, 12]}
    )
    assert result.state == "failed", result.output[-4000:]
    assert result.task_state("fetch") == "failed"  # not up_for_retry: AirflowFailException
    assert result.task_state("describe") == "upstream_failed"
    assert result.xcom("fetch", key="missing_ids") == [ABSENT]
    with pytest.raises(KeyError):
        result.xcom("fetch")
    assert "1 of 3 activities were not returned" in result.output
