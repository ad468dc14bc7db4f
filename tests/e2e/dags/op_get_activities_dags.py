"""DAGs for tests/e2e/test_operator_dag.py: Bitrix24GetActivitiesOperator in real ``airflow dags test`` runs.

``op_get_activities`` takes the activity IDs from the DAG run's conf (``{"ids": [...]}``) through an
upstream task and fetches them three ways: as an ``XComArg``, as a Jinja-rendered string, and one
mapped task per ID through ``.partial(...).expand(...)``. Downstream tasks report the Python types
they received, so the test can check that typed values (pendulum ``DateTime``, ``Decimal``,
``bool``) survived XCom. ``op_get_activities_missing`` fails on missing IDs (``on_missing="fail"``).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import dag, task

from airflow_provider_b24.operators.activity import Bitrix24GetActivitiesOperator


@task
def ids_from_conf(**context: Any) -> list[Any]:
    return list(context["dag_run"].conf["ids"])


def _describe(activities: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "id": a["ID"],
            "types": {key: type(value).__name__ for key, value in a.items()},
            "created_offset_s": a["CREATED"].utcoffset().total_seconds(),
            "created": a["CREATED"].isoformat(),
        }
        for a in activities
    ]


@task
def describe(activities: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What a downstream task sees: the types of every field it received."""
    return _describe(activities)


@task
def describe_mapped(per_id: Any) -> list[dict[str, Any]]:
    """The mapped fetches' results arrive as a lazy sequence of lists (one per mapped task)."""
    return _describe([activity for activities in per_id for activity in activities])


@dag(dag_id="op_get_activities", schedule=None, start_date=pendulum.datetime(2024, 1, 1), catchup=False)
def op_get_activities() -> None:
    ids = ids_from_conf()

    from_xcomarg = Bitrix24GetActivitiesOperator(
        task_id="fetch_xcomarg", activity_ids=ids, select=["COMMUNICATIONS"], on_missing="warn"
    )
    from_jinja = Bitrix24GetActivitiesOperator(
        task_id="fetch_jinja",
        activity_ids="{{ ti.xcom_pull(task_ids='ids_from_conf') }}",
        on_missing="ignore",
    )
    ids >> from_jinja
    mapped = Bitrix24GetActivitiesOperator.partial(task_id="fetch_mapped", on_missing="ignore").expand(
        activity_ids=ids
    )

    describe.override(task_id="describe_xcomarg")(from_xcomarg.output)
    describe.override(task_id="describe_jinja")(from_jinja.output)
    describe_mapped(mapped.output)


@dag(
    dag_id="op_get_activities_missing",
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1),
    catchup=False,
)
def op_get_activities_missing() -> None:
    # retries are configured, but a missing ID is permanent: the task must fail without using them.
    fetched = Bitrix24GetActivitiesOperator(
        task_id="fetch", activity_ids=ids_from_conf(), retries=3, retry_delay=timedelta(seconds=1)
    )
    describe(fetched.output)


op_get_activities()
op_get_activities_missing()
