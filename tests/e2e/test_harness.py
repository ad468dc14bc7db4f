"""The e2e harness itself: a trivial DAG runs and its typed XCom comes back intact."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pendulum
import pytest

from airflow_provider_b24.testing.airflow_home import AirflowHomeError

pytestmark = pytest.mark.e2e

DAG = """
from __future__ import annotations
from decimal import Decimal
import pendulum
from airflow.sdk import dag, task

@dag(schedule=None, start_date=pendulum.datetime(2024, 1, 1), catchup=False)
def harness_probe():
    @task
    def produce():
        return {"when": pendulum.parse("2020-09-27T13:26:55+02:00"), "amount": Decimal("1.5")}

    @task
    def consume(value):
        return type(value["when"]).__name__

    consume(produce())

harness_probe()
"""


def test_dags_test_runs_and_xcom_round_trips(airflow_runner, tmp_path: Path) -> None:
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "probe.py").write_text(DAG)
    result = airflow_runner.run_dag("harness_probe", dags)
    assert result.state == "success", result.output[-3000:]
    assert result.task_state("produce") == "success"
    produced = result.xcom("produce")
    assert produced["when"] == pendulum.parse("2020-09-27T13:26:55+02:00")
    assert produced["when"].utcoffset().total_seconds() == 7200
    assert produced["amount"] == Decimal("1.5")
    assert result.xcom("consume") == "DateTime"


def test_a_failing_airflow_command_raises_with_its_output(airflow_runner) -> None:
    with pytest.raises(AirflowHomeError, match=r"`airflow dags test no_such_dag` exited with [1-9]") as err:
        airflow_runner.check_cli("dags", "test", "no_such_dag")
    assert "no_such_dag" in str(err.value).split("\n", 1)[1]  # the output's tail follows
